"""Batch workers sharing a store: model calls and wall time of N concurrent `claims batch`
processes over the same papers, against one batch alone.

    python bench/workers.py [--inputs 60] [--workers 3] [--latency 0.2] [--concurrency 4] [--postgres URL]

Builds N distinct papers (as bench/batch.py does), serves the scripted endpoint on 127.0.0.1 with
the given latency, then runs one batch alone on a fresh SQLite store, and the workers at once on
another fresh store (SQLite; with --postgres, an empty PostgreSQL database too). Each process
has a response cache of its own, as on separate machines. Prints the calls of each, their ratio
(goal: the workers together make at most 1.1 x the calls of one batch) and wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from batch import make_inputs  # noqa: E402
from scripted_endpoint import ScriptedEndpoint, Scripts  # noqa: E402

from pipeline.team.store import Store  # noqa: E402


def run_workers(
    listing: Path, env: dict[str, str], store: str, workers: int, concurrency: int
) -> tuple[float, list[dict]]:
    folder = listing.parent
    started = time.perf_counter()
    processes = []
    for n in range(workers):
        tag = f"{Path(store).name if '://' not in store else 'pg'}-{workers}-{n}"
        own = {**env, "CLAIMS_DB": store, "CLAIMS_CACHE": str(folder / f"cache-{tag}")}
        command = [sys.executable, "-m", "pipeline", "batch", str(listing), "-j", str(concurrency)]
        command += ["--report", str(folder / f"report-{tag}.json")]
        log = (folder / f"worker-{tag}.log").open("w")
        processes.append((subprocess.Popen(command, env=own, stdout=log, stderr=subprocess.STDOUT), tag))
    for process, tag in processes:
        process.wait()
        if not (folder / f"report-{tag}.json").exists():
            log = (folder / f"worker-{tag}.log").read_text()[-3000:]
            raise SystemExit(f"worker {tag} ended with {process.returncode} and no report: {log}")
    seconds = time.perf_counter() - started
    return seconds, [json.loads((folder / f"report-{tag}.json").read_text()) for _, tag in processes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=60)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--postgres", help="an empty PostgreSQL database to measure the workers on too")
    parser.add_argument("--quick", action="store_true", help="4 papers, 2 workers, 20 ms a call: a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.inputs, args.workers, args.latency = 4, 2, 0.02
    scripts = Scripts.from_files(
        sorted(p for p in (ROOT / "fixtures" / "scripts").glob("*.json") if "misbehaving" not in p.name)
    )
    with tempfile.TemporaryDirectory(prefix="claims-workers-") as scratch:
        folder = Path(scratch)
        listing = folder / "papers.txt"
        listing.write_text("\n".join(map(str, make_inputs(folder, args.inputs))) + "\n")
        with ScriptedEndpoint(scripts, latency=args.latency) as endpoint:
            env = {
                **os.environ,
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": endpoint.base_url,
                "PYTHONPATH": str(ROOT),
            }
            alone_seconds, [alone] = run_workers(listing, env, str(folder / "alone.db"), 1, args.concurrency)
            print(
                f"1 batch alone: {alone['model_calls']} model calls, {alone['succeeded']} papers stored, "
                f"{alone_seconds:.1f} s"
            )
            stores = [str(folder / "shared.db")] + ([args.postgres] if args.postgres else [])
            for store in stores:
                if "://" in store and Store(store).summaries():
                    sys.exit(f"{store} holds records already: give an empty database")
                seconds, reports = run_workers(listing, env, store, args.workers, args.concurrency)
                calls = sum(r["model_calls"] for r in reports)
                print(
                    f"{args.workers} batches at once on {'PostgreSQL' if '://' in store else 'SQLite'}: "
                    f"{calls} model calls ({calls / alone['model_calls']:.2f} x one batch; goal <= 1.10), "
                    f"split {'/'.join(str(r['succeeded']) for r in reports)}, "
                    f"{len(Store(store).summaries())} records stored, {seconds:.1f} s "
                    f"({seconds / alone_seconds:.2f} x one batch's wall time)"
                )


if __name__ == "__main__":
    main()
