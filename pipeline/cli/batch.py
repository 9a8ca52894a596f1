"""`claims batch`: the command, its live display and its summary (the work is in batch.py)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipeline.cli.app import (
    DbOption,
    MaxPdfOption,
    NotAStudyOption,
    PasswordStdinOption,
    VerifyOption,
    app,
    credentials,
    err,
    one_line_errors,
    open_store,
    out,
    paper_tools,
    pdf_cap,
    run_settings,
    say_adaptations,
)
from pipeline.core.errors import BatchStoppedError, InputError
from pipeline.core.files import require_writable_folder
from pipeline.core.schema import record_validator
from pipeline.core.settings import current
from pipeline.llm.base import ChatModel
from pipeline.llm.providers import LiveModel, get_model, via_batch_api
from pipeline.llm.ratelimit import RateLimitedChatModel, RateLimiter
from pipeline.team.accounts import attributed
from pipeline.team.store import Store
from pipeline.workflow.batch import (
    ProgressLog,
    batch_requests,
    read_inputs,
    report,
    run_batch,
    write_report,
)
from pipeline.workflow.paper import PaperOptions, PaperResult, Tally
from pipeline.workflow.pool import ParsePool

VIAS = ("chat", "batch-api")


class BatchDisplay:
    """A live panel on a terminal (counts, each worker's stage, tokens, cost); elsewhere, one
    line per finished paper, so a log stays readable."""

    def __init__(self, console: Console, tally: Tally):
        self.console = console
        self.tally = tally
        self.live = (
            Live(console=console, refresh_per_second=4, get_renderable=self.render) if console.is_terminal else None
        )
        self.started = time.monotonic()

    def __enter__(self) -> BatchDisplay:
        if self.live:
            self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self.live.stop()

    def cost_text(self) -> str:
        return f"${self.tally.cost:.4f}" + ("" if self.tally.cost_known else " (+ models without a price)")

    def render(self) -> Group:
        t = self.tally
        with t.lock:
            head = Text(
                f"done {t.done} \u00b7 already done {t.already_done} \u00b7 failed {t.failed} \u00b7 remaining {t.remaining} "
                f"of {t.total} \u00b7 model calls {t.calls} \u00b7 tokens {t.prompt_tokens + t.completion_tokens:,} "
                f"\u00b7 cost {self.cost_text()} \u00b7 {time.monotonic() - self.started:.0f} s"
            )
            table = Table(show_header=True, header_style="bold", box=None)
            table.add_column("paper")
            table.add_column("stage")
            for source, stage in list(t.workers.items()):
                table.add_row(Path(source).name if not source.startswith("10.") else source, stage)
        return Group(head, table)

    def paper_done(self, result: PaperResult) -> None:
        if self.live:
            return
        what = {"done": f"record {result.record_id}", "already_done": f"already stored as {result.record_id}"}
        line = (
            f"[{self.tally.total - self.tally.remaining}/{self.tally.total}] {result.status}: {result.source}: "
            + what.get(result.status, result.error or "")
        )
        self.console.print(line, markup=False, highlight=False)


@app.command("batch")
@one_line_errors
def batch_command(
    inputs: Path = typer.Argument(
        ..., metavar="INPUT", help="A text file of DOIs and PDF paths (one a line, # comments), or a folder of PDFs."
    ),
    concurrency: int = typer.Option(4, "--concurrency", "-j", min=1, help="Model requests in flight at once."),
    rpm: int | None = typer.Option(None, "--rpm", min=1, help="At most this many model requests a minute."),
    tpm: int | None = typer.Option(
        None, "--tpm", min=1, help="At most this many tokens a minute (prompt estimate + allowed completion)."
    ),
    model: str = typer.Option(
        None, "--model", metavar="MODEL", help="Model name. Default: $CLAIMS_MODEL or gpt-4o-mini."
    ),
    record: Path | None = typer.Option(
        None, "--record", metavar="DIR", help="Keep one recording per paper in this folder."
    ),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop starting papers after the first failure."),
    report_path: Path = typer.Option(
        Path("batch-report.json"), "--report", metavar="FILE", help="Where to write the JSON report."
    ),
    via: str = typer.Option(
        "chat",
        "--via",
        metavar="chat|batch-api",
        help="chat (one request at a time) or batch-api (OpenAI Batch API: half price, slower).",
    ),
    refresh: bool = typer.Option(False, "--refresh", help="Ignore cached DOI metadata and PDFs."),
    attach: bool = typer.Option(
        False, "--attach", help="Also add each paper to the stored claims it matches (as new drafts)."
    ),
    attach_threshold: float = typer.Option(
        40.0, "--attach-threshold", help="Match score (0-100, see claims match) needed to attach."
    ),
    max_pdf_mb: float | None = MaxPdfOption,
    not_a_study_ok: bool = NotAStudyOption,
    verify_with: str | None = VerifyOption,
    password_stdin: bool = PasswordStdinOption,
    db: str | None = DbOption,
) -> None:
    """Process many papers: concurrent, resumable, cached, with live progress and cost.

    Run the same command again after a crash and it resumes; a JSON report is written.
    Exit 0 when every paper succeeded (or was already done), 1 when some failed, 2 when the
    endpoint refused the configuration (key, access, model, address) or could not be reached:
    the batch stops there, and the same command resumes it.
    """
    if via not in VIAS:
        raise InputError(f"unknown --via {via!r}: choose chat or batch-api")
    sources = read_inputs(inputs)
    live = get_model(current(), max_in_flight=concurrency if via == "chat" else None)
    settings = run_settings(model, live, verify_with)
    store = open_store(db)
    started_by = attributed(store, current().reviewer, "run", credentials(password_stdin))
    # Where the results go is tried now, not after every model call has been paid for.
    require_writable_folder(report_path.resolve().parent, "report")
    if record:
        require_writable_folder(record, "recordings")
    chat = _requests_through(live, via, store, len(sources), rpm, tpm)
    attach_at = attach_threshold if attach else None
    options = _options(via, concurrency, len(sources), fail_fast, refresh, attach_at, not_a_study_ok, started_by)
    started = datetime.now(UTC).replace(microsecond=0).isoformat()
    tally = Tally(total=len(sources))
    err.print(
        f"{len(sources)} papers, {concurrency} model requests at a time, model {settings.model} via {via}; report: {report_path}"
    )
    done: list[PaperResult] = []
    progress_path = report_path.with_name(report_path.name + ".progress.jsonl")

    def warm() -> None:
        """Loaded when the first paper needs the model: the client, which the first request waits
        for; then, while the first requests are out, the record validator, which the first store
        would otherwise build while other papers' requests wait for the interpreter."""
        live.warm()
        threading.Thread(target=record_validator, daemon=True, name="record-validator").start()

    with (
        ParsePool(warm=warm, max_pdf_bytes=pdf_cap(max_pdf_mb)) as pool,
        ProgressLog(progress_path) as progress,
    ):
        tools = paper_tools(chat, live, store, pool, max_pdf_mb)
        with BatchDisplay(err, tally) as display:

            def on_result(result: PaperResult) -> None:
                done.append(result)
                display.paper_done(result)
                progress.add(result)  # one line a paper, appended: the same cost at paper 10 and 10,000

            try:
                results = run_batch(batch_requests(sources, record), settings, tools, options, tally, on_result)
            except KeyboardInterrupt:
                finished = list(done)
                write_report(report_path, report(finished, settings, started, options, live.adaptations), finished)
                err.print(f"interrupted: {len(done)} of {len(sources)} papers reported in {report_path}", markup=False)
                raise
    data = report(results, settings, started, options, live.adaptations)
    write_report(report_path, data, results)
    progress_path.unlink(missing_ok=True)  # the report holds it all now
    _summary_table(results, data, report_path)
    say_adaptations(live)
    stopper = next((r for r in results if r.stopped_batch), None)
    if stopper is not None:
        raise BatchStoppedError(
            f"{stopper.error}; the batch stopped ({data['not_started']} papers not started): "
            "run the same command again once that is fixed, and it goes on where it stopped"
        )
    if data["failed"] or data["not_started"]:
        raise typer.Exit(1)


def _options(
    via: str,
    concurrency: int,
    papers: int,
    fail_fast: bool,
    refresh: bool,
    attach_threshold: float | None,
    not_a_study_ok: bool,
    started_by: str,
) -> PaperOptions:
    return PaperOptions(
        # More papers open than request slots (the Batch API: all of them), so that parsing and
        # checking some papers overlaps the model calls of others and no slot waits for work.
        concurrency=3 * concurrency if via == "chat" else max(concurrency, papers),
        fail_fast=fail_fast,
        refresh=refresh,
        discount=0.5 if via == "batch-api" else 1.0,
        attach_threshold=attach_threshold,
        not_a_study_ok=not_a_study_ok,
        lease_seconds=current().lease_seconds,
        started_by=started_by,
    )


def _requests_through(
    live: LiveModel, via: str, store: Store, papers: int, rpm: int | None, tpm: int | None
) -> ChatModel:
    """What the batch's requests go through: the live model, or its Batch API, within the limits."""
    chat: ChatModel = live
    if via == "batch-api":
        # Beside a SQLite store; a shared (PostgreSQL) store's batches are this machine's to resume.
        state = store.file.with_suffix(".batches.db") if store.file else current().cache_dir / "batches.db"
        chat = via_batch_api(live, state, expected_waiting=papers, poll_seconds=current().batch_poll_seconds)
    if rpm or tpm:
        chat = RateLimitedChatModel(chat, RateLimiter(rpm, tpm))
    return chat


SUMMARY_ROWS = 50  # a longer batch's table lists its failures only; the report has every paper


def _summary_table(results: list[PaperResult], data: dict[str, Any], report_path: Path) -> None:
    shown = (
        results
        if len(results) <= SUMMARY_ROWS
        else [r for r in results if r.status not in ("done", "already_done")][:SUMMARY_ROWS]
    )
    if len(shown) < len(results):
        out.print(
            f"{len(results)} papers: the table lists {len(shown)} that did not succeed (every paper is in {report_path})"
            if shown
            else f"{len(results)} papers, every one stored (each is in {report_path})",
            markup=False,
        )
    if shown:
        table = Table(title="batch summary", show_lines=False)
        table.add_column("paper", no_wrap=True, overflow="ellipsis", max_width=36)
        table.add_column("status", no_wrap=True)
        table.add_column("record / error", overflow="fold")
        for column in ("calls", "tokens", "cost", "seconds"):
            table.add_column(column, justify="right", no_wrap=True)
        for r in shown:
            table.add_row(
                r.source if r.source.startswith("10.") else Path(r.source).name,
                r.status,
                r.record_id or (r.error or ""),
                f"{r.calls}" + (f" (+{r.cached_calls} cached)" if r.cached_calls else ""),
                f"{r.prompt_tokens + r.completion_tokens:,}",
                "?" if r.cost is None else f"${r.cost:.4f}",
                f"{r.seconds.get('total', 0):.1f}",
            )
        out.print(table)
    cost = "unknown (a model has no price in the table)" if data["cost_usd"] is None else f"${data['cost_usd']:.4f}"
    out.print(
        f"{data['succeeded']} succeeded, {data['already_done']} already done, {data['failed']} failed"
        + (f", {data['not_started']} not started" if data["not_started"] else "")
        + f"; {data['model_calls']} model calls ({data['cached_calls']} answers from the cache); "
        f"{data['prompt_tokens'] + data['completion_tokens']:,} tokens; estimated cost {cost}",
        markup=False,
    )
