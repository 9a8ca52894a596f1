"""Batch benchmark against the scripted endpoint: throughput, re-run cost, tokens, memory, faults.

    python bench/batch.py [--inputs 60] [--latency 0.2] [--concurrency 4] [--fault-rate 0.3] [--quick]
    python bench/batch.py --scale [--sizes 10,100,1000,5000]

Builds N distinct papers from the bundled ones (their text re-typeset, each with one line of its
own so no two share a model request), serves the scripted endpoint on 127.0.0.1 with the given
latency, and runs `claims batch` in a subprocess, as a user would. Prints:
- wall time / ideal, where ideal = inputs x model calls per input x latency / concurrency (goal <= 1.10);
- an unchanged re-run: model calls (goal 0) and its time / the first run's (goal <= 0.05);
- prompt tokens per paper / a baseline that sends the whole paper to every stage (goal <= 0.5);
- peak RSS of the batch, and of parsing one 351-page PDF with each extractor (goal <= 300 MB);
- with --fault-rate: a run where that share of requests fails (429 with Retry-After, 500, hangs
  past the client timeout, truncated JSON): every paper finishes or is reported with its reason.

--scale measures how a batch grows instead: at 0 s latency (pure overhead), ms per paper and the
batch process's peak RSS at each size (goal: at 5,000 papers within 1.2 x of those at 100); then
60 papers at 0.2 s and 2 s latency with -j 4 and -j 16, wall / ideal (goals 1.10 and 1.03 at -j 4).
"""

from __future__ import annotations

import argparse
import compileall
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pdfmaker import make_pdf  # noqa: E402
from scripted_endpoint import Faults, ScriptedEndpoint, Scripts  # noqa: E402

from pipeline.sources.pdf import read_pdf  # noqa: E402

PAPERS = {  # paper -> its DOI, carried in the copy's metadata as the original carries it
    "pmj_hpylori_iron_deficiency_metaanalysis_2010.pdf": "10.1136/pgmj.2009.089987",
    "nutres_dietary_nitrate_crossover_rct_2016.pdf": "10.1016/j.nutres.2016.11.004",
    "bmc_trauma_dvt_prophylaxis_review_2010.pdf": "10.1186/1752-2897-4-1",
}


def make_inputs(folder: Path, count: int) -> list[Path]:
    sources = []
    for name, doi in PAPERS.items():
        pdf = ROOT / "fixtures" / "papers" / name
        sources.append((read_pdf(pdf).pages, doi))
    made = []
    for index in range(count):
        pages, doi = sources[index % len(sources)]
        pages = list(pages)
        # Inside the abstract, which every stage sends, so that no two copies share a request.
        at = next(i for i, page in enumerate(pages) if re.search(r"(?im)^\s*abstract\s*$", page))
        pages[at] = re.sub(r"(?im)^(\s*abstract\s*)$", rf"\1\nBenchmark copy {index}.", pages[at], count=1)
        latin = [p.encode("latin-1", "replace").decode("latin-1") for p in pages]
        path = folder / f"copy-{index:03d}.pdf"
        path.write_bytes(make_pdf(latin, {"Subject": f"doi:{doi}"}))
        made.append(path)
    return made


def run_batch(listing: Path, env: dict[str, str], concurrency: int, report: Path) -> tuple[float, dict, int]:
    """The batch's wall time, its report, and the peak RSS in KB of its own process (the parse
    processes are measured apart, by rss_of_parsing)."""
    rss_file = report.with_suffix(".rss")
    started = time.perf_counter()
    subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "%M",
            "-o",
            str(rss_file),
            sys.executable,
            "-m",
            "pipeline",
            "batch",
            str(listing),
            "-j",
            str(concurrency),
            "--report",
            str(report),
            "--model",
            "gpt-4o-mini",
        ],
        env=env,
        cwd=listing.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    seconds = time.perf_counter() - started
    return seconds, json.loads(report.read_text()), int(rss_file.read_text().split()[-1])


def baseline_prompt_tokens(inputs: list[Path], calls_per_input: float) -> float:
    """Every stage sent the whole paper: its full text (about 4 characters a token) per call."""
    total = 0.0
    for path in inputs:
        text = "\n".join(read_pdf(path).pages)
        total += calls_per_input * len(text) / 4
    return total


def rss_of_parsing(pdf: Path, extractor: str) -> float:
    code = (
        "import resource, sys; sys.path.insert(0, {!r})\n"
        "from pathlib import Path\n"
        "from pipeline.sources.pdf import PdfiumExtractor, PypdfExtractor, read_pdf\n"
        "read_pdf(Path({!r}), {}())\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    ).format(str(ROOT), str(pdf), "PdfiumExtractor" if extractor == "pdfium" else "PypdfExtractor")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(result.stdout.strip().splitlines()[-1]) / 1024


def long_pdf(folder: Path) -> Path:
    import pypdf

    source = ROOT / "fixtures" / "bad" / "long_117_pages_geotopo.pdf"
    writer = pypdf.PdfWriter()
    for _ in range(3):
        writer.append(str(source))
    buffer = io.BytesIO()
    writer.write(buffer)
    path = folder / "long_351_pages.pdf"
    path.write_bytes(buffer.getvalue())
    return path


def bench_env(folder: Path, endpoint: ScriptedEndpoint, name: str) -> dict[str, str]:
    return {
        **os.environ,
        "OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_KEY": "sk-bench",
        "CLAIMS_DB": str(folder / f"{name}.db"),
        "CLAIMS_CACHE": str(folder / f"{name}-cache"),
        "PYTHONPATH": str(ROOT),
    }


def scale(scripts: Scripts, sizes: list[int]) -> None:
    """How a batch grows: overhead per paper and memory by size, then wall / ideal by latency."""
    with tempfile.TemporaryDirectory(prefix="claims-scale-") as scratch:
        folder = Path(scratch)
        inputs = make_inputs(folder, max(*sizes, 60))
        print("papers  latency  -j  wall s  ms/paper  peak RSS MB  calls")
        with ScriptedEndpoint(scripts, latency=0.0) as endpoint:
            for size in sizes:
                listing = folder / f"papers-{size}.txt"
                listing.write_text("\n".join(map(str, inputs[:size])) + "\n")
                seconds, data, rss_kb = run_batch(
                    listing, bench_env(folder, endpoint, f"s{size}"), 4, folder / f"r{size}.json"
                )
                assert data["succeeded"] == size, data["failed"]
                print(
                    f"{size:>6}  {0:>7.1f}  {4:>2}  {seconds:>6.1f}  {seconds / size * 1000:>8.1f}  "
                    f"{rss_kb / 1024:>11.0f}  {data['model_calls']:>5}"
                )
        listing = folder / "papers-60.txt"
        listing.write_text("\n".join(map(str, inputs[:60])) + "\n")
        print("papers  latency  -j  wall s  ideal s  wall / ideal  first request after  last answer before end")
        for latency in (0.2, 2.0):
            for concurrency in (4, 16):
                scripts.timeline.clear()
                with ScriptedEndpoint(scripts, latency=latency) as endpoint:
                    name = f"l{latency}-j{concurrency}"
                    started = time.monotonic()
                    seconds, data, _ = run_batch(
                        listing, bench_env(folder, endpoint, name), concurrency, folder / f"{name}.json"
                    )
                    timeline = sorted(endpoint.scripts.timeline)
                ideal = data["model_calls"] * latency / concurrency
                print(
                    f"{60:>6}  {latency:>7.1f}  {concurrency:>2}  {seconds:>6.1f}  {ideal:>7.2f}  {seconds / ideal:>12.3f}  "
                    f"{timeline[0][0] - started:>18.2f}  {started + seconds - timeline[-1][1]:>22.2f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", action="store_true", help="measure growth from 10 to 5,000 papers instead")
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--inputs", type=int, default=60)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument("--quick", action="store_true", help="6 papers at 20 ms a call, no fault run: a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.inputs, args.latency, args.fault_rate = 6, 0.02, 0.0
    # The package's bytecode, as an installed one has it: PYTHONDONTWRITEBYTECODE would otherwise
    # have every batch compile it again, and its start-up would measure the compiler.
    compileall.compile_dir(str(ROOT / "pipeline"), quiet=1)
    scripts = Scripts.from_files(
        sorted(p for p in (ROOT / "fixtures" / "scripts").glob("*.json") if "misbehaving" not in p.name)
    )
    if args.scale:
        scale(scripts, [int(n) for n in args.sizes.split(",")])
        return
    with tempfile.TemporaryDirectory(prefix="claims-bench-") as scratch:
        folder = Path(scratch)
        inputs = make_inputs(folder, args.inputs)
        listing = folder / "papers.txt"
        listing.write_text("\n".join(map(str, inputs)) + "\n")
        with ScriptedEndpoint(scripts, latency=args.latency) as endpoint:
            env = {
                **os.environ,
                "OPENAI_BASE_URL": endpoint.base_url,
                "OPENAI_API_KEY": "sk-bench",
                "CLAIMS_DB": str(folder / "store.db"),
                "CLAIMS_CACHE": str(folder / "cache"),
                "PYTHONPATH": str(ROOT),
            }
            first_started = time.monotonic()
            first_s, first, batch_rss_kb = run_batch(listing, env, args.concurrency, folder / "first.json")
            timeline = sorted(endpoint.scripts.timeline)
            second_s, second, _ = run_batch(listing, env, args.concurrency, folder / "second.json")
        calls_per_input = first["model_calls"] / max(1, first["succeeded"])
        ideal = args.inputs * calls_per_input * args.latency / args.concurrency
        baseline = baseline_prompt_tokens(inputs, calls_per_input)
        print(f"inputs {args.inputs}, latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
        print(
            f"first run: {first['succeeded']} succeeded, {first['failed']} failed, {first['model_calls']} model calls, "
            f"{first_s:.2f} s; ideal {ideal:.2f} s; wall / ideal = {first_s / ideal:.3f} (goal <= 1.10)"
        )
        busy = sum(end - start for start, end in timeline)
        span = timeline[-1][1] - timeline[0][0]
        print(
            f"  model requests: the first arrived {timeline[0][0] - first_started:.2f} s after the start, the last was "
            f"answered {first_started + first_s - timeline[-1][1]:.2f} s before the end; in between "
            f"{busy / span:.2f} of {args.concurrency} slots were busy on average"
        )
        print(
            f"unchanged re-run: {second['model_calls']} model calls (goal 0), {second_s:.2f} s; "
            f"re-run / first = {second_s / first_s:.3f} (goal <= 0.05)"
        )
        print(
            f"prompt tokens: {first['prompt_tokens'] / args.inputs:,.0f} a paper against a whole-paper baseline of "
            f"{baseline / args.inputs:,.0f}; ratio {first['prompt_tokens'] / baseline:.3f} (goal <= 0.5)"
        )
        print(f"estimated cost of the first run at gpt-4o-mini prices: ${first['cost_usd']:.4f}")
        print(f"peak RSS, batch (largest process): {batch_rss_kb / 1024:.0f} MB (goal <= 300 MB)")
        if not args.quick:  # a 351-page PDF parsed twice: most of a quick run's time
            big = long_pdf(folder)
            for extractor in ("pdfium", "pypdf"):
                print(
                    f"peak RSS, parsing a {len(read_pdf(big).pages)}-page PDF with {extractor}: {rss_of_parsing(big, extractor):.0f} MB"
                )
        if args.fault_rate:
            faults = Faults(rate=args.fault_rate, hang_seconds=2.5, retry_after="1", seed=7)
            with ScriptedEndpoint(scripts, latency=args.latency, faults=faults) as endpoint:
                env.update(
                    {
                        "OPENAI_BASE_URL": endpoint.base_url,
                        "CLAIMS_DB": str(folder / "faults.db"),
                        "CLAIMS_CACHE": str(folder / "faults-cache"),
                        "CLAIMS_TIMEOUT": "2",
                        # The injected hangs stand for a remote endpoint's: a server on this
                        # machine gets no timeout retry by default (it would still be computing).
                        "CLAIMS_TIMEOUT_RETRIES": "2",
                    }
                )
                fault_s, faulty, _ = run_batch(listing, env, args.concurrency, folder / "faults.json")
            reasons = sorted({p["error"].split(":")[0] for p in faulty["papers"] if p["error"]})
            lost = args.inputs - faulty["succeeded"] - faulty["failed"]
            print(
                f"with {args.fault_rate:.0%} of requests failing ({dict(faults.counts)}): {faulty['succeeded']} succeeded, "
                f"{faulty['failed']} failed{' (' + '; '.join(reasons) + ')' if reasons else ''}, {lost} lost, {fault_s:.1f} s"
            )


if __name__ == "__main__":
    main()
