"""Review-queue speed with 10,000 records: p95 time of listing, filtering and record pages.

    python bench/review_queue.py [--records 10000] [--requests 200] [--postgres URL]

Fills a fresh SQLite store (and with --postgres, an empty PostgreSQL database too) with copies of
the bundled records (each under its own id, claim and title, so searches have work to do), then
asks the review web app (in process, Starlette's test client, so no network noise) for the queue
as a reviewer uses it: listing (the first page, a sort by flags, a late page), filtering (a
search, a status and flag filter) and record pages. Prints each kind's p50 and p95 in ms per
store (target: p95 under 200 ms). Then what `claims batch --attach` spends on each paper to match
it against every stored claim: reading the claims (the batch's first paper parses them all, each
later one only those changed since) and scoring them.
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

from pipeline.core.models import ClaimRecord  # noqa: E402
from pipeline.sources.pdf import read_pdf  # noqa: E402
from pipeline.team.store import Store  # noqa: E402
from pipeline.web import create_app  # noqa: E402
from pipeline.workflow.evidence import rank_matches  # noqa: E402
from pipeline.workflow.paper import StoredClaims  # noqa: E402

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


def measure(store: Store, count: int, requests: int) -> None:
    started = time.perf_counter()
    ids = fill(store, count)
    print(f"{store.path}: {count} records stored in {time.perf_counter() - started:.0f} s")
    client = TestClient(create_app(store), base_url="http://127.0.0.1:8000")
    pick = random.Random(2)
    listing = ["/", "/?sort=flags", "/?page=150", "/?sort=claim"]
    filtering = ["/?q=iron+protein", "/?status=draft&flagged=1", "/?q=Study+77", "/?q=heparin&sort=oldest"]
    kinds: dict[str, list[float]] = {"list": [], "filter": [], "record page": []}
    for n in range(requests):
        for kind, path in (
            ("list", listing[n % len(listing)]),
            ("filter", filtering[n % len(filtering)]),
            ("record page", f"/records/{pick.choice(ids)}"),
        ):
            started = time.perf_counter()
            answer = client.get(path)
            kinds[kind].append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, (path, answer.status_code)
    for kind, times in kinds.items():
        print(f"  {kind}: p50 {p(times, 50):.1f} ms, p95 {p(times, 95):.1f} ms over {len(times)} requests")
    matching(store, count)


def matching(store: Store, count: int) -> None:
    """--attach: a batch's papers, one after another, matched against every stored claim."""
    paper = ROOT / "fixtures" / "papers" / "pmj_hpylori_iron_deficiency_metaanalysis_2010.pdf"
    opening = read_pdf(paper).text_of(("front", "abstract"), 8000)  # what --attach matches on
    claims = StoredClaims(store)
    reads, scores = [], []
    for _ in range(6):
        started = time.perf_counter()
        stored = claims.current()
        reads.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        rank_matches(stored, opening)
        scores.append((time.perf_counter() - started) * 1000)
    print(
        f"  --attach, each paper against the {count} claims: reading them {reads[0]:.0f} ms for the batch's first "
        f"paper, then {statistics.median(reads[1:]):.1f} ms; scoring them {statistics.median(scores):.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--postgres", help="an empty PostgreSQL database to measure too (postgresql://...)")
    parser.add_argument("--quick", action="store_true", help="200 records, 20 requests: a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.records, args.requests = 200, 20
    with tempfile.TemporaryDirectory() as folder:
        measure(Store(Path(folder) / "queue.db"), args.records, args.requests)
    if args.postgres:
        store = Store(args.postgres)
        if store.summaries():
            sys.exit(f"{store.path} holds records already: give an empty database")
        measure(store, args.records, args.requests)


if __name__ == "__main__":
    main()
