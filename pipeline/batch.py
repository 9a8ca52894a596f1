"""Batches: many papers, concurrently, resumable, with a live tally of tokens and cost.

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
import hashlib
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.accounts import drafted_note
from pipeline.core.errors import (
    ClaimsError,
    ConfigError,
    InputError,
    StaleVersionError,
)
from pipeline.core.files import require_regular_file, write_text_atomic
from pipeline.core.identifiers import looks_like_doi, normalise_doi, paper_source
from pipeline.core.models import ClaimRecord, StudyMetadata
from pipeline.core.resources import PromptSet, load_prompt_set
from pipeline.core.settings import RunSettings
from pipeline.core.settings import current as current_settings
from pipeline.evidence import add_study, match_score
from pipeline.llm.base import ChatModel, LLMContext, RecordingChatModel, ResponseCache, request_priority
from pipeline.llm.recording import build_recording, save_recording
from pipeline.review import stored_sources
from pipeline.run import STAGES, RunResult, run_key, run_pipeline, run_prompts
from pipeline.sources.metadata import DoiCache, DoiSettings, fetch
from pipeline.sources.pdf import Document
from pipeline.stages.check import CheckRunner, check_record
from pipeline.store import LeaseState, Store

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


# --------------------------------------------------------------------------- prices


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: int, completion_tokens: int, discount: float = 1.0) -> float:
        return discount * (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6


def load_prices() -> dict[str, Price]:
    """USD per million tokens, from the shipped table or the file CLAIMS_PRICES names."""
    override = current_settings().prices_file
    try:
        text = override.read_text() if override else resources.files("pipeline").joinpath("prices.json").read_text()
        table = json.loads(text)
        return {model: Price(p["input"], p["output"]) for model, p in table.items() if not model.startswith("_")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the price table {override or 'pipeline/prices.json'} is unreadable ({exc})") from exc


# --------------------------------------------------------------------------- results and the live tally


@dataclass
class PaperResult:
    source: str
    status: str  # "done", "already_done", "failed", "not_started"; "held" only until the other worker ends
    record_id: str | None = None
    stored_by_other_worker: bool = False  # already_done because a batch sharing the inputs stored it meanwhile
    error: str | None = None
    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    attached: list[str] = field(default_factory=list)  # claims the paper was added to (--attach)
    attach_errors: list[str] = field(default_factory=list)
    # Its error was the endpoint refusing, or not answering, every request: no paper after it started.
    stopped_batch: bool = False


@dataclass
class Tally:
    """What the progress display shows; updated by the workers, read by the display."""

    total: int
    done: int = 0
    failed: int = 0
    already_done: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cost: float = 0.0
    cost_known: bool = True
    workers: dict[str, str] = field(default_factory=dict)  # source -> stage it is in
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed - self.already_done

    def stage(self, source: str, stage: str | None) -> None:
        with self.lock:
            if stage is None:
                self.workers.pop(source, None)
            else:
                self.workers[source] = stage

    def finish(self, result: PaperResult) -> None:
        with self.lock:
            self.workers.pop(result.source, None)
            if result.status == "done":
                self.done += 1
            elif result.status == "already_done":
                self.already_done += 1
            elif result.status == "failed":
                self.failed += 1
            self.prompt_tokens += result.prompt_tokens
            self.completion_tokens += result.completion_tokens
            self.calls += result.calls
            if result.cost is None:
                self.cost_known = False
            else:
                self.cost += result.cost


# --------------------------------------------------------------------------- one paper


def recording_name(source: str) -> str:
    stem = Path(source).stem if not looks_like_doi(source) else normalise_doi(source)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_") or "paper"


@dataclass
class BatchOptions:
    concurrency: int = 4
    fail_fast: bool = False
    record_dir: Path | None = None
    refresh: bool = False
    discount: float = 1.0  # 0.5 through the Batch API
    attach_threshold: float | None = None  # --attach: add each paper to the claims it matches this well
    not_a_study_ok: bool = False  # draft documents that do not look like research papers
    lease_seconds: float = 120.0  # a paper's lease, renewed while it runs; a dead worker's runs out
    started_by: str = ""  # who started the batch, for each new draft's history
    # when the batch started (UTC, as the store writes times): a paper found stored since then was
    # stored by another worker sharing the inputs, not by an earlier batch
    started_at: str = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0).isoformat())


@dataclass
class BatchTools:
    """The I/O a batch needs, made by the caller (live, or replayed in tests)."""

    chat: ChatModel
    store: Store
    cache: ResponseCache | None
    doi_client: Any
    doi_cache: DoiCache
    doi_settings: DoiSettings
    parse: Callable[[Path], Document]
    prices: dict[str, Price]
    base_url: str | None = None
    # What the endpoint's client changed in its requests because the endpoint refused them (an
    # answer format, a sampling parameter): its own list, which grows as it learns.
    adaptations: list[str] = field(default_factory=list)
    prompts: PromptSet = field(default_factory=load_prompt_set)  # read once a batch
    check: CheckRunner = check_record
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")
    leases: LeaseKeeper | None = None  # set by run_batch


def _dead_here(holder: str) -> bool:
    """Whether a lease holder ("host:pid:tag") is a process of this machine that has ended."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, and is another user's
    return False


class LeaseKeeper:
    """Renews the leases this worker holds, in a thread of its own, so a paper that takes longer
    than a lease stays this worker's; when the process dies the renewals stop and the leases run
    out, and another worker takes those papers."""

    def __init__(self, store: Store, holder: str, seconds: float):
        self._store, self._holder, self._seconds = store, holder, seconds
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, daemon=True, name="lease-keeper")

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def take(self, key: str) -> LeaseState:
        state = self._store.take_lease(key, self._holder, self._seconds)
        if state.outcome == "held" and state.holder and _dead_here(state.holder):
            # a batch on this machine that was killed: its papers need not wait for the leases to run out
            state = self._store.take_lease(key, self._holder, self._seconds, replacing=state.holder)
        if state.outcome == "taken":
            with self._lock:
                self._keys.add(key)
        return state

    def done(self, key: str, stored: bool) -> None:
        """The paper is stored (the store ended the lease with it) or failed (given back)."""
        with self._lock:
            self._keys.discard(key)
        if not stored:
            self._store.release_lease(key, self._holder)

    def _renew(self) -> None:
        while not self._stop.wait(self._seconds / 4):
            with self._lock:
                keys = list(self._keys)
            for key in keys:
                try:
                    self._store.renew_lease(key, self._holder, self._seconds)
                except ClaimsError:  # the store is briefly unreachable: the next round tries again
                    pass


def _keep_recording(
    source: str,
    settings: RunSettings,
    tools: BatchTools,
    options: BatchOptions,
    llm: LLMContext | None,
    recorded: tuple[Path, str, Any, str | None] | None,
    record: ClaimRecord | None,
    failure: str | None,
) -> None:
    """With --record: the paper's recording, a failed one's too (every exchange up to the failure)."""
    chat = llm.chat if llm is not None else None
    if not (options.record_dir and recorded and isinstance(chat, RecordingChatModel) and (record or chat.interactions)):
        return
    pdf, sha256, metadata, pdf_url = recorded
    target = options.record_dir / recording_name(source)
    recording = build_recording(
        pdf,
        target,
        sha256,
        metadata,
        pdf_url,
        settings,
        run_prompts(tools.prompts, settings),
        chat.interactions,
        tools.base_url,
        failure=failure,
        details=tuple(tools.adaptations),
    )
    save_recording(target, recording, record, pdf)


def stage_priority(stage: str, place: int) -> tuple[int, int]:
    """A request's claim on a free slot: the stage with the most stages after it first (extract,
    then draft, then grade: the longest remaining chain first, which keeps every slot busy up to
    the batch's last round, where finishing each paper before the next would leave the last few
    papers' chains running alone), then the paper the batch opened first."""
    return (STAGES.index(stage) if stage in STAGES else len(STAGES), place)


def process_paper(
    source: str, settings: RunSettings, tools: BatchTools, options: BatchOptions, tally: Tally, place: int = 0
) -> PaperResult:
    result = PaperResult(source=source, status="failed")
    started = time.perf_counter()
    llm: LLMContext | None = None
    # (pdf, sha256, metadata, pdf_url), to keep a failed run's recording
    recorded: tuple[Path, str, Any, str | None] | None = None
    leased: str | None = None  # the run key this worker holds a lease on
    try:
        tally.stage(source, "fetch" if looks_like_doi(source) and not Path(source).exists() else "parse")
        pdf, metadata, pdf_url = _locate(source, tools, options)
        pdf_bytes = pdf.read_bytes()
        sha256 = hashlib.sha256(pdf_bytes).hexdigest()
        key = run_key(sha256, settings, metadata, run_prompts(tools.prompts, settings))
        if existing := tools.store.find_run(key):  # checked before parsing: a finished batch re-runs in moments
            result.status, result.record_id, result.cost = "already_done", existing, 0.0
            result.stored_by_other_worker = tools.store.created_at(existing) >= options.started_at
            return result
        if tools.leases is not None:  # before the first model call: batches sharing the inputs pay once
            lease = tools.leases.take(key)
            if lease.outcome != "taken":
                result.status, result.record_id, result.cost = (
                    ("already_done", lease.record_id, 0.0) if lease.outcome == "stored" else ("held", None, 0.0)
                )
                result.stored_by_other_worker = lease.outcome == "stored"
                return result
            leased = key
        tally.stage(source, "parse")
        document = tools.parse(pdf)
        result.seconds["parse"] = round(time.perf_counter() - started, 3)
        chat = RecordingChatModel(tools.chat) if options.record_dir else tools.chat
        # A recording must hold every exchange, so a recorded paper does not read the cache.
        llm = LLMContext(chat, settings, cache=None if options.record_dir else tools.cache, prompts=tools.prompts)
        recorded = (pdf, sha256, metadata, pdf_url)
        run: RunResult = run_pipeline(
            pdf,
            llm,
            document=document,
            metadata=metadata,
            pdf_url=pdf_url,
            check_runner=tools.check,
            not_a_study_ok=options.not_a_study_ok,
            progress=lambda stage, event, detail: (
                _stage_started(source, stage, place, tally) if event == "start" else None
            ),
        )
        result.seconds.update(run.seconds)
        _keep_recording(source, settings, tools, options, llm, recorded, run.record, None)
        result.record_id = tools.store.add(
            run.record,
            note=drafted_note(options.started_by),
            run_key=key,
            source_pages=run.document.pages,
            pdf=pdf_bytes,
        )
        result.status = "done"
        if options.attach_threshold is not None:
            _stage_started(source, "attach", place, tally)
            result.attached, result.attach_errors = attach_to_matches(
                run.document, result.record_id, llm, tools, options.attach_threshold
            )
    except ClaimsError as exc:
        result.error = str(exc)
        result.stopped_batch = exc.stops_batch
        _keep_recording(source, settings, tools, options, llm, recorded, None, result.error)
    except Exception as exc:
        result.error = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if leased is not None and tools.leases is not None:
            tools.leases.done(leased, stored=result.record_id is not None)
        result.seconds["total"] = round(time.perf_counter() - started, 3)
        if llm is not None:  # a failed paper's calls cost money too
            _count(result, llm, settings, tools, options)
    return result


def _stage_started(source: str, stage: str, place: int, tally: Tally) -> None:
    tally.stage(source, stage)
    request_priority.set(stage_priority(stage, place))  # this thread's requests, until the next stage


def attach_to_matches(
    document: Document, own_id: str, llm: LLMContext, tools: BatchTools, threshold: float
) -> tuple[list[str], list[str]]:
    """Add the paper, as a new draft version, to every other stored claim it matches above the
    threshold; a claim another worker changed meanwhile is re-read and tried again. Returns the
    claims it was added to, and what went wrong with the others (the paper itself is done)."""
    opening = document.text_of(("front", "abstract"), 8000)
    attached: list[str] = []
    problems: list[str] = []
    for summary in tools.store.summaries():
        if summary.record_id == own_id:
            continue
        claim = tools.store.get(summary.record_id)
        if (
            document.study_id in {s.reference.study_id for s in claim.studies}
            or match_score(claim, opening)[0] < threshold
        ):
            continue
        for _ in range(3):
            claim, version = tools.store.get_versioned(summary.record_id)
            try:
                updated, stance = add_study(claim, document, stored_sources(tools.store, claim), llm)
                tools.store.update(
                    updated,
                    version,
                    "evidence added",
                    "batch --attach",
                    f"added {document.study_id} ({stance.stance.value}): {stance.rationale}",
                )
            except StaleVersionError:
                continue
            except ClaimsError as exc:
                problems.append(f"not added to {summary.record_id}: {exc}")
                break
            attached.append(summary.record_id)
            break
    return attached, problems


def _locate(source: str, tools: BatchTools, options: BatchOptions) -> tuple[Path, StudyMetadata | None, str | None]:
    path, doi = paper_source(source)
    if path is not None:
        require_regular_file(path, tools.doi_settings.max_pdf_bytes, "PDF", "--max-pdf-mb (or CLAIMS_MAX_PDF_MB)")
        return path, None, None
    assert doi is not None
    fetched = fetch(doi, tools.doi_client, tools.doi_cache, tools.doi_settings, refresh=options.refresh)
    assert fetched.pdf is not None
    return fetched.pdf, fetched.metadata, fetched.pdf_url


def _count(
    result: PaperResult, llm: LLMContext, settings: RunSettings, tools: BatchTools, options: BatchOptions
) -> None:
    result.calls = llm.usage.calls
    result.cached_calls = sum(t.cached_calls for t in llm.usage.by_stage.values())
    result.prompt_tokens, result.completion_tokens = llm.usage.tokens
    price = tools.prices.get(settings.model)
    result.cost = price.cost(result.prompt_tokens, result.completion_tokens, options.discount) if price else None


# --------------------------------------------------------------------------- the batch


HELD_POLL_SECONDS = 2.0


def run_batch(
    sources: list[str],
    settings: RunSettings,
    tools: BatchTools,
    options: BatchOptions,
    tally: Tally,
    on_result: Callable[[PaperResult], None] = lambda _: None,
) -> list[PaperResult]:
    stop = threading.Event()
    results: dict[int, PaperResult] = {}
    # Hand the interpreter lock over sooner (default 5 ms): a thread whose answer has arrived, or
    # whose request slot has opened, should not wait behind another paper's checks.
    sys.setswitchinterval(0.001)

    held: list[tuple[int, str]] = []

    stopped_by: list[str] = []  # why the batch stopped starting papers: --fail-fast, or the endpoint

    def work(index: int, source: str) -> None:
        if stop.is_set():
            results[index] = PaperResult(source=source, status="not_started", error=stopped_by[0])
            return
        result = process_paper(source, settings, tools, options, tally, place=index)
        if result.status == "held":  # another worker is on it: come back to it once the rest is done
            with lock:
                held.append((index, source))
            tally.stage(source, None)
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

    def drain(queue: Iterator[tuple[int, str]]) -> None:
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
        pending = list(enumerate(sources))
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
    return [results[index] for index in range(len(sources))]


def report(
    results: list[PaperResult], settings: RunSettings, started: str, options: BatchOptions, adaptations: list[str]
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
