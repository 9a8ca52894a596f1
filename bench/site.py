"""The static site: a full build of 1,000 approved claims, then a build after one claim changed.

    python bench/site.py [--claims 1000]
    python bench/site.py --quick          # 20 claims, a few seconds (a test runs it)

The claims are copies of the three faithful bundled records (new ids, the DVT review marked CC BY
so that its quotes are drawn on their pages), approved in a scratch SQLite store. Goals: the full
build at most 60 s, the one-claim-changed build at most 5 s, on this machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from pipeline.llm.recording import load_recording, recorded_pdf  # noqa: E402
from pipeline.review import decisions  # noqa: E402
from pipeline.review.publish import build_site  # noqa: E402
from pipeline.sources.pdf import read_pdf  # noqa: E402
from pipeline.team.store import Store  # noqa: E402

RUNS = ROOT / "fixtures" / "runs"
FAITHFUL = ["huang-2010-hpylori-iron", "siervo-2016-nitrate", "datta-2010-dvt-prophylaxis"]


def fill(store: Store, count: int) -> list[str]:
    originals = []
    for name in FAITHFUL:
        recording, record = load_recording(RUNS / name)
        assert record is not None
        if name.startswith("datta"):
            record.studies[0].reference.licence = "https://creativecommons.org/licenses/by/2.0/"
        pdf = recorded_pdf(RUNS / name, recording)
        originals.append((record, read_pdf(pdf).pages, pdf.read_bytes()))
    ids = []
    for n in range(count):
        record, pages, pdf = originals[n % len(originals)]
        copy = record.model_copy(deep=True)
        copy.record_id = f"{n:012x}"
        copy.claim.text = f"{record.claim.text.rstrip('.')} (copy {n})."
        ids.append(store.add(copy, source_pages=pages, pdf=pdf))
        decisions.approve(store, copy.record_id, 1, "bench", "checked")
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="20 claims")
    args = parser.parse_args()
    count = 20 if args.quick else args.claims
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        store = Store(folder / "site.db")
        started = time.perf_counter()
        ids = fill(store, count)
        print(f"{count} approved claims stored in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        full = build_site(store, folder / "site", "https://claims.example.org")
        full_s = time.perf_counter() - started
        print(
            f"full build: {full_s:.1f} s (goal <= 60 s): {full.written} files, {full.images} page images drawn, "
            f"{full.claims} claims, {full.studies} study pages"
        )
        record = store.get(ids[0])
        record.mechanism.summary += " Changed for the benchmark."
        decisions.reopen(store, ids[0], 2, "bench", "a change")
        decisions.edit(store, ids[0], 3, record.model_dump_json(), "bench", "a change")
        decisions.approve(store, ids[0], 4, "bench2", "checked again", override="bench")
        started = time.perf_counter()
        again = build_site(store, folder / "site", "https://claims.example.org")
        again_s = time.perf_counter() - started
        print(
            f"one claim changed: {again_s:.2f} s (goal <= 5 s): {again.written} files written, "
            f"{again.unchanged} unchanged, {again.removed} removed"
        )


if __name__ == "__main__":
    main()
