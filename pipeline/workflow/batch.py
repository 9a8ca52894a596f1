"""Batches: many papers, concurrently, resumable, with a live tally of tokens and cost.

Each paper goes the way `workflow.process_paper` sets out, as `claims run`'s one paper does.
Papers run on a thread pool (model calls wait on the network); PDFs are parsed in a process
pool, so parsing uses every core. Every record is stored with its *run key* (the PDF's sha256
and everything that shapes the run: settings, prompt hashes, DOI metadata, pipeline version) in
the same transaction as the record itself: a batch killed at any moment and started again skips
what it stored, redoes what it had not, and never stores a run twice. Model answers go through
the response cache, so even a paper that was cut off half-way costs no call for the stages it
had finished. A paper that fails (bad PDF, no open-access copy, refusal, an endpoint that keeps
failing) is reported with its reason and the batch goes on, unless `fail_fast`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.core.errors import ConfigError, InputError
from pipeline.core.files import write_text_atomic
from pipeline.core.identifiers import looks_like_doi, normalise_doi
from pipeline.core.settings import RunSettings
from pipeline.core.settings import current as current_settings
from pipeline.workflow.paper import (
    LeaseKeeper,
    PaperOptions,
    PaperRequest,
    PaperResult,
    PaperTools,
    Price,
    Tally,
    process_paper,
)

# --------------------------------------------------------------------------- inputs


def read_inputs(path: Path) -> list[str]:
    """A folder: its PDFs. A text file: one DOI or PDF path a line; blank lines and '#' comments skipped."""
    if path.is_dir():
        sources = [str(p) for p in sorted(path.glob("*.pdf")) + sorted(path.glob("*.PDF"))]
        if not sources:
            raise InputError(f"{path}: the folder holds no PDF")
        return sources
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file of DOIs and PDF paths (is it a PDF? pass its folder)") from exc
    sources = [line.split("#", 1)[0].strip() for line in lines]
    relative_to = path.parent
    resolved = [s if looks_like_doi(s) or Path(s).is_absolute() else str(relative_to / s) for s in sources if s]
    if not resolved:
        raise InputError(f"{path}: no DOI or PDF path in it")
    return resolved


def recording_name(source: str) -> str:
    stem = Path(source).stem if not looks_like_doi(source) else normalise_doi(source)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "paper"


def batch_requests(sources: list[str], record_dir: Path | None) -> list[PaperRequest]:
    """One request a paper; with --record, each paper's recording in a folder of its own."""
    return [
        PaperRequest(source, record_to=record_dir / recording_name(source) if record_dir else None)
        for source in sources
    ]


# --------------------------------------------------------------------------- prices


def load_prices() -> dict[str, Price]:
    """USD per million tokens, from the shipped table or the file CLAIMS_PRICES names."""
    override = current_settings().prices_file
    try:
        text = override.read_text() if override else resources.files("pipeline").joinpath("prices.json").read_text()
        table = json.loads(text)
        return {model: Price(p["input"], p["output"]) for model, p in table.items() if not model.startswith("_")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the price table {override or 'pipeline/prices.json'} is unreadable ({exc})") from exc


# --------------------------------------------------------------------------- the batch


HELD_POLL_SECONDS = 2.0


def run_batch(
    requests: list[PaperRequest],
    settings: RunSettings,
    tools: PaperTools,
    options: PaperOptions,
    tally: Tally,
    on_result: Callable[[PaperResult], None] = lambda _: None,
) -> list[PaperResult]:
    stop = threading.Event()
    results: dict[int, PaperResult] = {}
    # Hand the interpreter lock over sooner (default 5 ms): a thread whose answer has arrived, or
    # whose request slot has opened, should not wait behind another paper's checks.
    sys.setswitchinterval(0.001)

    held: list[tuple[int, PaperRequest]] = []

    stopped_by: list[str] = []  # why the batch stopped starting papers: --fail-fast, or the endpoint

    def work(index: int, request: PaperRequest) -> None:
        if stop.is_set():
            results[index] = PaperResult(source=request.source, status="not_started", error=stopped_by[0])
            return
        result = process_paper(request, settings, tools, options, tally, place=index)
        if result.status == "held":  # another worker is on it: come back to it once the rest is done
            with lock:
                held.append((index, request))
            tally.stage(request.source, None)
            return
        results[index] = result
        tally.finish(result)
        on_result(result)
        if result.status == "failed" and (options.fail_fast or result.stopped_batch):
            with lock:
                if not stopped_by:
                    stopped_by.append(
                        f"not started: {result.error}" if result.stopped_batch else "stopped by --fail-fast"
                    )
            stop.set()

    lock = threading.Lock()
    workers = max(1, options.concurrency)

    def drain(queue: Iterator[tuple[int, PaperRequest]]) -> None:
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                return
            work(*item)

    with (
        LeaseKeeper(tools.store, tools.worker, options.lease_seconds) as tools.leases,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="paper") as pool,
    ):
        pending = list(enumerate(requests))
        while pending:
            # each worker thread takes the next paper when it is free: no task object a paper,
            # so the batch's memory does not grow with its length
            queue = iter(pending)
            for thread in [pool.submit(drain, queue) for _ in range(min(workers, len(pending)))]:
                thread.result()
            with lock:
                pending, held[:] = list(held), []
            if pending:  # stored by the other worker by now, or its lease ran out (it died) and is taken here
                time.sleep(min(HELD_POLL_SECONDS, options.lease_seconds / 4))
    tools.leases = None
    return [results[index] for index in range(len(requests))]


def report(
    results: list[PaperResult], settings: RunSettings, started: str, options: PaperOptions, adaptations: list[str]
) -> dict[str, Any]:
    """The report's totals, and what the client changed for the endpoint; `write_report` adds
    every paper."""
    costs = [r.cost for r in results]
    return {
        "started": started,
        "finished": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "model": settings.model,
        "inputs": len(results),
        "succeeded": sum(r.status == "done" for r in results),
        "already_done": sum(r.status == "already_done" for r in results),
        "stored_by_other_workers": sum(r.stored_by_other_worker for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "not_started": sum(r.status == "not_started" for r in results),
        "model_calls": sum(r.calls for r in results),
        "cached_calls": sum(r.cached_calls for r in results),
        "prompt_tokens": sum(r.prompt_tokens for r in results),
        "completion_tokens": sum(r.completion_tokens for r in results),
        "cost_usd": round(sum(c for c in costs if c is not None), 6) if None not in costs else None,
        "price_discount": options.discount,
        "endpoint_adaptations": list(adaptations),
    }


class ProgressLog:
    """Each finished paper as one JSON line appended to a file beside the report, so a batch that
    is killed leaves what it did, at a cost that does not grow with the batch (the report itself is
    written once, at the end or on Ctrl-C)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._file: Any = None

    def __enter__(self) -> ProgressLog:
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._file.close()

    def add(self, result: PaperResult) -> None:
        line = json.dumps(dataclasses.asdict(result), ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()


def write_report(path: Path, totals: dict[str, Any], results: list[PaperResult]) -> None:
    """The totals and then every paper, one JSON object a line, written as it goes (not built as
    one string first: at 5,000 papers that would be the batch's largest object)."""

    def parts() -> Iterator[str]:
        yield json.dumps(totals, indent=2, ensure_ascii=False)[:-2] + ',\n  "papers": ['
        for n, result in enumerate(results):
            yield ("," if n else "") + "\n    " + json.dumps(dataclasses.asdict(result), ensure_ascii=False)
        yield "\n  ]\n}\n"

    write_text_atomic(path, parts())
