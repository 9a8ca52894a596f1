"""The review page under a login flood: a record page's p50 and p95, alone and while 20 clients
send wrong passwords as fast as they can.

    python bench/login_flood.py [--requests 100] [--flooders 20]
    python bench/login_flood.py --quick       # a few requests, a few seconds (a test runs it)

The server is `claims serve`'s app under uvicorn in a process of its own, on 127.0.0.1, over a
scratch SQLite store with a bundled record and an account. The login limit is lifted for the
flood (as if it came from many addresses), so every wrong login costs a full argon2id hash: the
worst case for the event loop. Goal: the record page's p50 under the flood at most 2x alone.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PASSWORD = "correct horse battery"


def serve(db: str, port: int) -> None:
    """The server process: the review app with the login limit lifted."""
    import uvicorn

    from pipeline.team.accounts import LoginLimiter
    from pipeline.team.store import Store
    from pipeline.web import create_app

    store = Store(db)
    app = create_app(store, login_limiter=LoginLimiter(store, attempts=10**9))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def prepare(folder: Path) -> tuple[str, str]:
    from probes import RUNS

    from pipeline.llm.recording import load_recording, recorded_pdf
    from pipeline.sources.pdf import read_pdf
    from pipeline.team.accounts import hash_password
    from pipeline.team.store import Store

    db = str(folder / "flood.db")
    recording, record = load_recording(RUNS / "huang-2010-hpylori-iron")
    assert record is not None
    pages = read_pdf(recorded_pdf(RUNS / "huang-2010-hpylori-iron", recording)).pages
    store = Store(db)
    record_id = store.add(record, source_pages=pages)
    store.add_account("alice", "reviewer", hash_password(PASSWORD))
    return db, record_id


def percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = statistics.quantiles(ordered, n=20)[18] if len(ordered) > 1 else ordered[0]
    return statistics.median(ordered), p95


def measure(client: httpx.Client, path: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--flooders", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return
    from probes import wait_until_serving

    count = 10 if args.quick else args.requests
    with tempfile.TemporaryDirectory() as scratch:
        db, record_id = prepare(Path(scratch))
        import socket

        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        server = subprocess.Popen([sys.executable, __file__, "--serve", db, str(port)])
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(base)
            client = httpx.Client(base_url=base, headers={"Origin": base})
            token = client.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
            client.post("/login", data={"csrf": token, "name": "alice", "password": PASSWORD, "next": "/"})
            path = f"/records/{record_id}"
            measure(client, path, 3)  # warm: templates, the page cache
            alone = measure(client, path, count)
            stop = threading.Event()
            logins = [0]

            def flood() -> None:
                with httpx.Client(base_url=base, headers={"Origin": base}) as hostile:
                    csrf = hostile.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
                    while not stop.is_set():
                        hostile.post("/login", data={"csrf": csrf, "name": "alice", "password": "wrong password!"})
                        logins[0] += 1

            flooders = [threading.Thread(target=flood, daemon=True) for _ in range(args.flooders)]
            for thread in flooders:
                thread.start()
            time.sleep(1.0)  # let the flood build up
            started, before = time.perf_counter(), logins[0]
            flooded = measure(client, path, count)
            rate = (logins[0] - before) / (time.perf_counter() - started)
            stop.set()
            for thread in flooders:
                thread.join(timeout=30)
        finally:
            server.terminate()
            server.wait(timeout=10)
    a50, a95 = percentiles(alone)
    f50, f95 = percentiles(flooded)
    print(f"record page alone: p50 {a50:.0f} ms, p95 {a95:.0f} ms ({count} requests)")
    print(
        f"record page under {args.flooders} clients sending wrong logins ({rate:.0f} logins/s): "
        f"p50 {f50:.0f} ms, p95 {f95:.0f} ms"
    )
    print(f"p50 under the flood / alone: {f50 / a50:.2f}x (goal <= 2x)")


if __name__ == "__main__":
    main()
