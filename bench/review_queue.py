"""Review-queue speed with 10,000 records: p95 time of the queue page and of a record page.

    python bench/review_queue.py [--records 10000] [--requests 200]

Fills a fresh SQLite store with copies of the bundled records (each under its own id, claim and
title, so searches have work to do), then asks the review web app (in process, Starlette's test
client, so no network noise) for the queue as a reviewer uses it: the first page, a search, a
sort by flags, a filter, a late page; and for record pages. Prints each kind's p50 and p95 in ms
(target: queue p95 under 200 ms).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from starlette.testclient import TestClient  # noqa: E402

from pipeline.models import ClaimRecord  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.web import create_app  # noqa: E402

RUNS = ROOT / "fixtures" / "runs"
WORDS = [
    "iron",
    "nitrate",
    "heparin",
    "trauma",
    "muscle",
    "protein",
    "diabetes",
    "blood",
    "pressure",
    "sleep",
    "coffee",
    "exercise",
]


def fill(store: Store, count: int) -> list[str]:
    bundled = [ClaimRecord.model_validate_json(p.read_text()) for p in sorted(RUNS.glob("*/record.json"))]
    pick = random.Random(1)
    ids = []
    for n in range(count):
        record = bundled[n % len(bundled)].model_copy(deep=True)
        record.record_id = f"{n:012x}"
        topic = " ".join(pick.sample(WORDS, 2))
        record.claim.text = f"Claim {n} on {topic}: {record.claim.text}"
        record.studies[0].reference.title = f"Study {n} of {topic}"
        ids.append(store.add(record))
    return ids


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "queue.db")
        started = time.perf_counter()
        ids = fill(store, args.records)
        print(f"{args.records} records stored in {time.perf_counter() - started:.0f} s")
        client = TestClient(create_app(store), base_url="http://127.0.0.1:8000")
        pick = random.Random(2)
        queries = ["/", "/?q=iron+protein", "/?sort=flags", "/?status=draft&flagged=1", "/?page=150", "/?q=Study+77"]
        kinds: dict[str, list[float]] = {"queue": [], "record page": []}
        for n in range(args.requests):
            for kind, path in (("queue", queries[n % len(queries)]), ("record page", f"/records/{pick.choice(ids)}")):
                started = time.perf_counter()
                answer = client.get(path)
                kinds[kind].append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
        for kind, times in kinds.items():
            print(f"{kind}: p50 {p(times, 50):.1f} ms, p95 {p(times, 95):.1f} ms over {len(times)} requests")


if __name__ == "__main__":
    main()
