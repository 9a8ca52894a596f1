"""One paper's way through the pipeline, written once: `claims run` is a batch of one, each paper
of `claims batch` goes the same way, and `claims add-evidence` and `batch --attach` add a study to
a claim through the same `add_evidence`.

A paper is located (a PDF, or a DOI's metadata and open-access copy), its run key computed (the
PDF's sha256 and everything that shapes the run: settings, prompt hashes, DOI metadata, pipeline
version), and then, unless the store already holds that run, leased (so workers sharing the inputs
pay for it once), run through the stages (answers from the response cache where they exist),
recorded when asked, checked, and stored with its key in one transaction. Every step reports to
one progress callback; a failure is the paper's result (a batch goes on) or, for `claims run`,
the command's error.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.core.errors import ClaimsError, InputError, StaleVersionError
from pipeline.core.files import require_regular_file
from pipeline.core.identifiers import paper_source
from pipeline.core.models import ClaimRecord, StanceOutput, StudyMetadata
from pipeline.core.resources import PromptSet, load_prompt_set
from pipeline.core.settings import RunSettings
from pipeline.llm.base import ChatModel, LLMContext, RecordingChatModel, ResponseCache, request_priority
from pipeline.llm.recording import RecordedSource, build_recording, save_recording
from pipeline.review.decisions import stored_sources
from pipeline.sources.metadata import DoiCache, DoiSettings, Fetched, fetch
from pipeline.sources.pdf import Document
from pipeline.stages.check import CheckRunner, Rewriter, Sources, check_record, model_rewriter
from pipeline.team.accounts import drafted_note
from pipeline.team.store import LeaseState, Store
from pipeline.workflow.evidence import add_study, already_a_study, rank_matches
from pipeline.workflow.run import STAGES, Progress, quiet, require_a_study, run_key, run_pipeline, run_prompts

# --------------------------------------------------------------------------- request and result


@dataclass(frozen=True)
class PaperRequest:
    """One paper to run: a PDF path or a DOI, and what `claims run` may add to it."""

    source: str
    pdf: Path | None = None  # with a DOI: read this PDF instead of downloading the open-access copy
    strict: bool = False  # with a DOI and `pdf`: refuse a PDF whose DOI or title differs from the metadata
    force: bool = False  # run and store it even where the same run is stored
    record_to: Path | None = None  # keep the run (a failed one too) as a recording in this folder


@dataclass
class PaperResult:
    """What became of one paper: a line of the batch report, and what `claims run` prints."""

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
    recording: str | None = None  # where the run's recording was saved
    attached: list[str] = field(default_factory=list)  # claims the paper was added to (--attach)
    attach_errors: list[str] = field(default_factory=list)
    # Its error was the endpoint refusing, or not answering, every request: no paper after it started.
    stopped_batch: bool = False


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: int, completion_tokens: int, discount: float = 1.0) -> float:
        return discount * (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6


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


# --------------------------------------------------------------------------- options and tools


@dataclass
class PaperOptions:
    concurrency: int = 4
    fail_fast: bool = False
    refresh: bool = False
    discount: float = 1.0  # 0.5 through the Batch API
    attach_threshold: float | None = None  # --attach: add each paper to the claims it matches this well
    not_a_study_ok: bool = False  # draft documents that do not look like research papers
    lease_seconds: float = 120.0  # a paper's lease, renewed while it runs; a dead worker's runs out
    started_by: str = ""  # who started the run, for each new draft's history
    # `claims run`: the paper's error is the command's (its message and exit code), not a report line
    raise_errors: bool = False
    # when the batch started (UTC, as the store writes times): a paper found stored since then was
    # stored by another worker sharing the inputs, not by an earlier batch
    started_at: str = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0).isoformat())


@dataclass(frozen=True)
class DoiAccess:
    """What looking a DOI up needs: the HTTP client, the metadata and PDF cache, the limits."""

    client: Any
    cache: DoiCache
    settings: DoiSettings


@dataclass
class PaperTools:
    """The I/O a paper's run needs, made by the caller (live, or replayed in tests)."""

    chat: ChatModel
    store: Store
    cache: ResponseCache | None
    doi: DoiAccess
    parse: Callable[[Path], Document]
    prices: dict[str, Price]
    base_url: str | None = None
    # What the endpoint's client changed in its requests because the endpoint refused them (an
    # answer format, a sampling parameter): its own list, which grows as it learns.
    adaptations: list[str] = field(default_factory=list)
    prompts: PromptSet = field(default_factory=load_prompt_set)  # read once a batch
    check: CheckRunner = check_record
    # each step's start and end, as run_pipeline reports them, plus "fetch" and "record"
    progress: Progress = quiet
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")
    leases: LeaseKeeper | None = None  # set by run_batch
    claims: StoredClaims = field(init=False)  # the stored claims, as --attach matches papers to them

    def __post_init__(self) -> None:
        self.claims = StoredClaims(self.store)


class StoredClaims:
    """The store's claims as matching reads them, kept from paper to paper of a batch: each paper
    asks the store for every claim's id and version only, and parses just the claims that are new
    or changed since. Parsing is the cost: on a store of 2,000 claims, reading them all took 0.9 s
    a paper. The claims it returns are shared, to be read, not changed."""

    READ_ALL = 500  # more changed than this: one query for all of them instead of a list of ids

    def __init__(self, store: Store):
        self._store = store
        self._known: dict[str, tuple[ClaimRecord, int]] = {}
        self._lock = threading.Lock()  # a batch's papers finish in threads of their own

    def current(self) -> list[ClaimRecord]:
        with self._lock:
            versions = self._store.record_versions()
            changed = [record_id for record_id, version in versions.items() if self._version(record_id) != version]
            if changed:
                for record, version in self._store.records(None if len(changed) > self.READ_ALL else changed):
                    self._known[record.record_id] = (record, version)
            for gone in self._known.keys() - versions.keys():
                del self._known[gone]
            return [self._known[record_id][0] for record_id in sorted(versions) if record_id in self._known]

    def _version(self, record_id: str) -> int | None:
        known = self._known.get(record_id)
        return known[1] if known else None


# --------------------------------------------------------------------------- leases


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


# --------------------------------------------------------------------------- locating a paper


@dataclass(frozen=True)
class Located:
    """A paper found: its PDF, that file's bytes and sha256, and for a DOI the registry's
    metadata and where the PDF came from (None for a PDF the user gave)."""

    pdf: Path
    data: bytes
    sha256: str
    metadata: StudyMetadata | None
    pdf_url: str | None

    @classmethod
    def read(cls, pdf: Path, metadata: StudyMetadata | None = None, pdf_url: str | None = None) -> Located:
        data = pdf.read_bytes()
        return cls(pdf, data, hashlib.sha256(data).hexdigest(), metadata, pdf_url)


def locate(request: PaperRequest, doi_access: DoiAccess, refresh: bool = False, progress: Progress = quiet) -> Located:
    """The paper's PDF and, for a DOI, its metadata (fetched, or from the cache). A local file is
    checked before any download or model call: a FIFO or /dev/zero ends here."""
    pdf_path, doi = paper_source(request.source)
    if pdf_path is not None and request.pdf is not None:
        raise InputError("--pdf goes with a DOI: give either a PDF, or a DOI and --pdf FILE")
    local = pdf_path or request.pdf
    if local is not None:
        require_regular_file(local, doi_access.settings.max_pdf_bytes, "PDF", "--max-pdf-mb (or CLAIMS_MAX_PDF_MB)")
    if doi is None:
        assert pdf_path is not None
        return Located.read(pdf_path)
    progress("fetch", "start", doi)
    fetched = fetch(
        doi, doi_access.client, doi_access.cache, doi_access.settings, want_pdf=request.pdf is None, refresh=refresh
    )
    for note in fetched.notes:
        progress("fetch", "note", note)
    progress("fetch", "done", describe_fetch(fetched))
    found = request.pdf or fetched.pdf
    assert found is not None
    return Located.read(found, fetched.metadata, fetched.pdf_url)


def describe_fetch(fetched: Fetched) -> str:
    meta = fetched.metadata
    where = ", ".join(str(part) for part in (meta.journal, meta.year) if part)
    line = f"{meta.doi}: {meta.title or '(no title)'}" + (f" ({where})" if where else "")
    if meta.retracted:
        line += " [RETRACTED]"
    if fetched.pdf_url:
        line += f"; PDF from {fetched.pdf_url}" + (" (cached)" if fetched.from_cache else "")
    return line


# --------------------------------------------------------------------------- one paper


def stage_priority(stage: str, place: int) -> tuple[int, int]:
    """A request's claim on a free slot: the stage with the most stages after it first (extract,
    then draft, then grade: the longest remaining chain first, which keeps every slot busy up to
    the batch's last round, where finishing each paper before the next would leave the last few
    papers' chains running alone), then the paper the batch opened first."""
    return (STAGES.index(stage) if stage in STAGES else len(STAGES), place)


def process_paper(
    request: PaperRequest,
    settings: RunSettings,
    tools: PaperTools,
    options: PaperOptions,
    tally: Tally,
    place: int = 0,
) -> PaperResult:
    """Locate, skip when stored, lease, run (cache, recording), check and store one paper."""
    source = request.source
    result = PaperResult(source=source, status="failed")
    started = time.perf_counter()
    llm: LLMContext | None = None
    located: Located | None = None
    leased: str | None = None  # the run key this worker holds a lease on

    def progress(stage: str, event: str, detail: str) -> None:
        if event == "start":
            tally.stage(source, stage)
            request_priority.set(stage_priority(stage, place))  # this thread's requests, until the next stage
        tools.progress(stage, event, detail)

    try:
        tally.stage(source, "locate")
        located = locate(request, tools.doi, options.refresh, progress)
        key = run_key(located.sha256, settings, located.metadata, run_prompts(tools.prompts, settings))
        existing = tools.store.find_run(key)  # checked before parsing: a finished batch re-runs in moments
        if existing and not request.force:
            result.status, result.record_id, result.cost = "already_done", existing, 0.0
            result.stored_by_other_worker = tools.store.created_at(existing) >= options.started_at
            return result
        if tools.leases is not None and not existing:  # before the first model call: sharing workers pay once
            lease = tools.leases.take(key)
            if lease.outcome != "taken":
                result.status, result.record_id, result.cost = (
                    ("already_done", lease.record_id, 0.0) if lease.outcome == "stored" else ("held", None, 0.0)
                )
                result.stored_by_other_worker = lease.outcome == "stored"
                if lease.outcome == "held":
                    progress(
                        "lease", "held", f"{source}: another worker ({lease.holder}) is running it; waiting for it"
                    )
                return result
            leased = key
        chat = RecordingChatModel(tools.chat) if request.record_to else tools.chat
        # A recording must hold every exchange, so a recorded paper does not read the cache.
        llm = LLMContext(chat, settings, cache=None if request.record_to else tools.cache, prompts=tools.prompts)
        run = run_pipeline(
            located.pdf,
            llm,
            metadata=located.metadata,
            pdf_url=located.pdf_url,
            strict=request.strict,
            read=tools.parse,
            check_runner=tools.check,
            not_a_study_ok=options.not_a_study_ok,
            progress=progress,
        )
        result.seconds.update(run.seconds)
        result.recording = _keep_recording(request, located, settings, tools, llm, run.record, None)
        result.record_id = tools.store.add(
            run.record,
            note=drafted_note(options.started_by),
            run_key=None if existing else key,
            source_pages=run.document.pages,
            pdf=located.data,
        )
        result.status = "done"
        if options.attach_threshold is not None:
            progress("attach", "start", "")
            result.attached, result.attach_errors = attach_to_matches(
                run.document, result.record_id, llm, tools, options.attach_threshold, options.started_by
            )
    except ClaimsError as exc:
        result.error = str(exc)
        result.stopped_batch = exc.stops_batch
        if located is not None:
            result.recording = _keep_recording(request, located, settings, tools, llm, None, result.error)
        if options.raise_errors:
            raise
    except Exception as exc:
        if options.raise_errors:
            raise
        result.error = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        if leased is not None and tools.leases is not None:
            tools.leases.done(leased, stored=result.record_id is not None)
        result.seconds["total"] = round(time.perf_counter() - started, 3)
        if llm is not None:  # a failed paper's calls cost money too
            _count(result, llm, settings, tools, options)
    return result


def _keep_recording(
    request: PaperRequest,
    located: Located,
    settings: RunSettings,
    tools: PaperTools,
    llm: LLMContext | None,
    record: ClaimRecord | None,
    failure: str | None,
) -> str | None:
    """With a recording folder: the paper's recording, a failed one's too (every exchange up to
    the failure). Returns where it was saved."""
    chat = llm.chat if llm is not None else None
    target = request.record_to
    if not (target and isinstance(chat, RecordingChatModel) and (record or chat.interactions)):
        return None
    recording = build_recording(
        located.pdf,
        target,
        located.sha256,
        located.metadata,
        located.pdf_url,
        settings,
        run_prompts(tools.prompts, settings),
        chat.interactions,
        tools.base_url,
        failure=failure,
        details=tuple(tools.adaptations),
    )
    save_recording(target, recording, record, located.pdf)
    what = "recording of the failed run" if failure else "recording"
    tools.progress("record", "done", f"{what} saved to {target} ({len(chat.interactions)} model exchanges)")
    return str(target)


def _count(
    result: PaperResult, llm: LLMContext, settings: RunSettings, tools: PaperTools, options: PaperOptions
) -> None:
    result.calls = llm.usage.calls
    result.cached_calls = sum(t.cached_calls for t in llm.usage.by_stage.values())
    result.prompt_tokens, result.completion_tokens = llm.usage.tokens
    price = tools.prices.get(settings.model)
    result.cost = price.cost(result.prompt_tokens, result.completion_tokens, options.discount) if price else None


# --------------------------------------------------------------------------- a study added to a claim


@dataclass(frozen=True)
class Added:
    """A study added to a claim: the claim before and after, the study's stance and the new version."""

    before: ClaimRecord
    after: ClaimRecord
    stance: StanceOutput
    version: int
    sources: Sources  # the texts of the claim's studies before, which the checks read


def add_evidence(
    store: Store,
    claim_id: str,
    document: Document,
    llm: LLMContext,
    actor: str,
    *,
    metadata: StudyMetadata | None = None,
    pdf_url: str | None = None,
    rewrite: Rewriter | None = None,
    attempts: int = 1,
) -> Added:
    """Add the study to the stored claim as a new draft version. A claim another writer changed
    meanwhile is refused (StaleVersionError, which says who), unless `attempts` allows reading it
    again and adding the study to what it now says (the model is asked again): a batch's
    --attach does, where nobody is there to run it again."""
    for attempt in range(attempts):
        claim, version = store.get_versioned(claim_id)
        sources = stored_sources(store, claim)
        updated, stance = add_study(claim, document, sources, llm, metadata=metadata, pdf_url=pdf_url, rewrite=rewrite)
        try:
            new_version = store.update(
                updated,
                version,
                "evidence added",
                actor,
                f"added {document.study_id} ({stance.stance.value}): {stance.rationale}",
            )
        except StaleVersionError:
            if attempt + 1 == attempts:
                raise
            continue
        return Added(claim, updated, stance, new_version, sources)
    raise AssertionError("unreachable: the last attempt returns or raises")


def add_paper(
    request: PaperRequest, claim_id: str, settings: RunSettings, tools: PaperTools, options: PaperOptions
) -> Added | None:
    """`claims add-evidence`: locate and read the paper, refuse one that is no study, and add it to
    the claim (None when it is one of the claim's studies already); with a recording folder, the
    exchanges are kept with the claim as it was, so the addition replays offline."""
    tools.store.resolve(claim_id)  # an unknown id ends here, before any download
    located = locate(request, tools.doi, options.refresh, tools.progress)
    document = tools.parse(located.pdf)
    if located.metadata is not None:
        document.doi = located.metadata.doi
    require_a_study(document, located.metadata, options.not_a_study_ok)
    if already_a_study(tools.store.get(claim_id), document):
        return None
    chat = RecordingChatModel(tools.chat) if request.record_to else tools.chat
    llm = LLMContext(chat, settings, cache=None if request.record_to else tools.cache, prompts=tools.prompts)
    tools.store.add_source(document.sha256, document.file_name, document.pages, pdf=located.data)
    tools.progress("add", "start", f"{document.study_id} to {claim_id}")
    added = add_evidence(
        tools.store,
        claim_id,
        document,
        llm,
        options.started_by or "unknown",
        metadata=located.metadata,
        pdf_url=located.pdf_url,
        rewrite=model_rewriter(llm),
    )
    if request.record_to and isinstance(chat, RecordingChatModel):
        recording = build_recording(
            located.pdf,
            request.record_to,
            located.sha256,
            located.metadata,
            located.pdf_url,
            settings,
            added.after.provenance.prompts,
            chat.interactions,
            tools.base_url,
            details=tuple(tools.adaptations),
        )
        recording.kind = "add-evidence"
        recording.base_record = added.before.model_dump(mode="json")
        recording.base_sources = {
            study_id: RecordedSource(file_name=doc.file_name, sha256=doc.sha256, pages=doc.pages)
            for study_id, doc in added.sources.items()
        }
        save_recording(request.record_to, recording, added.after, located.pdf)
        tools.progress("record", "done", f"recording saved to {request.record_to}")
    return added


def attach_to_matches(
    document: Document, own_id: str, llm: LLMContext, tools: PaperTools, threshold: float, actor: str
) -> tuple[list[str], list[str]]:
    """Add the paper, as a new draft version, to every other stored claim it matches above the
    threshold (the stored claims as `tools.claims` keeps them), in the name of who started the
    batch, as `claims add-evidence` does (so the four-eyes rule counts them among its authors).
    Returns the claims it was added to, and what went wrong with the others (the paper itself is
    done)."""
    opening = document.text_of(("front", "abstract"), 8000)
    attached: list[str] = []
    problems: list[str] = []
    for match in rank_matches(tools.claims.current(), opening):
        if match.score < threshold:
            break
        if match.claim.record_id == own_id or already_a_study(match.claim, document):
            continue
        try:
            add_evidence(tools.store, match.claim.record_id, document, llm, actor or "batch --attach", attempts=3)
        except ClaimsError as exc:
            problems.append(f"not added to {match.claim.record_id}: {exc}")
            continue
        attached.append(match.claim.record_id)
    return attached, problems
