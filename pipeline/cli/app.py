"""The `claims` command line.

Every known error becomes one line on stderr (`error: ...`) and the error's exit code: 2 for bad
input or configuration, 1 for a failed run or replay. An unexpected exception is also one line,
unless CLAIMS_DEBUG=1 asks for the traceback; locals are never shown, so no key can leak.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markdown import Markdown

from pipeline import __version__
from pipeline.errors import ClaimsError, InputError, ReplayError
from pipeline.files import (
    path_exists,
    read_json_file,
    require_regular_file,
    require_writable_folder,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from pipeline.identifiers import looks_like_doi, normalise_doi
from pipeline.llm.base import LLMContext, RecordingChatModel
from pipeline.llm.cache import SQLiteResponseCache
from pipeline.llm.openai import OpenAIChatModel
from pipeline.llm.recording import (
    RECORDING_FILE,
    build_recording,
    load_recording,
    save_recording,
)
from pipeline.models import ClaimRecord, StudyMetadata
from pipeline.render import FORMATS, render
from pipeline.replay import replay as replay_recording
from pipeline.review import recheck_against_pdf
from pipeline.run import STAGES, RunResult, run_pipeline
from pipeline.schema import require_valid, schema_errors
from pipeline.settings import RunSettings, Settings, current, use
from pipeline.sources.http import make_client
from pipeline.sources.metadata import DoiCache, DoiSettings, Fetched, fetch, file_stem
from pipeline.stages.check import count
from pipeline.store import SQLiteStore

MAX_DIFF_LINES = 200


def one_line_errors(command: Callable[..., None]) -> Callable[..., None]:
    """Known errors become `error: ...` and their exit code; a bug becomes one line too."""

    @functools.wraps(command)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            with use(Settings.from_environment()):  # read once; every layer finds it with current()
                command(*args, **kwargs)
        except ClaimsError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except sqlite3.DatabaseError as exc:
            err.print(f"error: {_database_trouble(exc)}", markup=False)
            raise typer.Exit(1) from None
        except OSError as exc:
            err.print(f"error: {_file_trouble(exc)}", markup=False)
            raise typer.Exit(1) from None
        except Exception as exc:
            if current().debug:
                raise
            err.print(
                f"error: internal error: {type(exc).__name__}: {exc} (set CLAIMS_DEBUG=1 for details)", markup=False
            )
            raise typer.Exit(70) from None

    return guarded


def _database_trouble(exc: sqlite3.DatabaseError) -> str:
    """A database failure in the user's words: a full disk, a damaged file, a locked store."""
    text = str(exc)
    if "full" in text:
        return f"the disk holding a database is full ({text}): free some space and run again; nothing was saved"
    if "malformed" in text or "not a database" in text:
        return (
            f"a database file is damaged ({text}): restore the store from a backup, or point CLAIMS_DB "
            "(or --db) at another file"
        )
    if "readonly" in text or "read-only" in text:
        return f"a database is read-only ({text}): this command writes; check the file's permissions"
    return f"a database could not be used ({text}); check CLAIMS_DB (or --db) and CLAIMS_CACHE"


def _file_trouble(exc: OSError) -> str:
    """A file-system failure (disk full, permission, read-only disk, name too long) in one line."""
    name = str(exc.filename) if exc.filename else ""
    where = f"{name if len(name) <= 120 else name[:117] + '...'}: " if name else ""
    advice = {
        errno.ENOSPC: "the disk is full: free some space and run again",
        errno.EACCES: "permission denied: check the folder's permissions or choose another",
        errno.EPERM: "not permitted: check the folder's permissions or choose another",
        errno.EROFS: "the file system is read-only: choose a writable folder",
        errno.ENAMETOOLONG: "the file name is too long",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{where}{advice}"


app = typer.Typer(
    help="Turn a published study (a PDF) into a reviewed, cited evidence claim record.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
out = Console(highlight=False, soft_wrap=True)
if not out.is_terminal:
    out.width = 160  # tables in logs and pipes: wide enough to read, not the terminal's 80
err = Console(stderr=True, highlight=False, soft_wrap=True)

DbOption = typer.Option(
    None, "--db", help="Record store (SQLite). Default: $CLAIMS_DB or ~/.local/share/claims/claims.db"
)


class StageProgress:
    """Shows the stage that is running, then one line per finished stage, on stderr."""

    def __init__(self, console: Console):
        self._console = console
        self._status: Any = None

    def __call__(self, stage: str, event: str, detail: str) -> None:
        position = f"[{STAGES.index(stage) + 1}/{len(STAGES)}]"
        if event == "start":
            self._status = self._console.status(f"{position} {stage} ...")
            self._status.start()
            return
        if self._status is not None:
            self._status.stop()
        self._console.print(f"{position} {stage}: {detail}")

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()


def open_store(db: Path | None, read_only: bool = False) -> SQLiteStore:
    """`read_only` for commands that only read: they work on a store the user may not write."""
    return SQLiteStore(db or current().db_path, read_only=read_only)


def _summary(result: RunResult) -> None:
    record = result.record
    certainty = record.certainty
    tokens = sum(u.prompt_tokens + u.completion_tokens for u in record.provenance.usage)
    calls = sum(u.calls for u in record.provenance.usage)
    flags = sum(len(c.flags) for c in record.checks)
    out.print(f"claim: {record.claim.text}")
    out.print(
        f"study: {record.studies[0].reference.title} ({record.studies[0].reference.study_id})\n"
        f"design: {certainty.design.value.replace('_', ' ')}; certainty: {certainty.certainty.value.replace('_', ' ')}; "
        f"findings: {len(record.studies[0].findings)}; causal steps: {len(record.mechanism.steps)}; "
        f"gold-standard studies: {len(record.gold_standard)}"
    )
    out.print(f"checks: {count(record.checks).line()}", markup=False)
    if flags:
        out.print(
            f"{flags} flag(s): the record stays a draft until a reviewer resolves them (claims render {record.record_id})",
            markup=False,
        )
    cached = sum(u.cached_calls for u in record.provenance.usage)
    out.print(
        f"model calls: {calls}" + (f" ({cached} answers from the cache)" if cached else "") + f"; tokens: {tokens}"
    )


def pdf_cap(max_pdf_mb: float | None) -> int:
    """The PDF size cap in bytes: --max-pdf-mb, else CLAIMS_MAX_PDF_MB, else 50 MB (downloads and local files)."""
    if max_pdf_mb is not None and max_pdf_mb <= 0:
        raise InputError(f"--max-pdf-mb {max_pdf_mb:g} must be more than 0")
    return int((max_pdf_mb or current().max_pdf_megabytes) * 1024 * 1024)


def doi_tools(max_pdf_mb: float | None) -> tuple[Any, DoiCache, DoiSettings]:
    mailto = current().mailto
    settings = DoiSettings(mailto=mailto, max_pdf_bytes=pdf_cap(max_pdf_mb))
    return make_client(mailto), DoiCache(current().cache_dir / "doi"), settings


def _source(text: str) -> tuple[Path | None, str | None]:
    """A PDF path or a DOI, from what the user typed."""
    path = Path(text)
    if path_exists(path):
        return path, None
    if looks_like_doi(text):
        return None, normalise_doi(text)
    if text.lower().endswith(".pdf"):
        raise InputError(f"{text}: no such file")
    raise InputError(f"'{text}' is neither a PDF file nor a DOI (expected 10.NNNN/suffix)")


NotAStudyOption = typer.Option(
    False, "--not-a-study-ok", help="Draft a document that does not look like a research paper (notes, slides, a book)."
)
MaxPdfOption = typer.Option(None, "--max-pdf-mb", help="Download size cap. Default: $CLAIMS_MAX_PDF_MB or 50.")


@app.command()
@one_line_errors
def run(
    source: str = typer.Argument(
        ..., metavar="PDF|DOI", help="The study: a PDF file, or a DOI (10.xxxx/..., doi:..., https://doi.org/...)."
    ),
    pdf: Path = typer.Option(
        None, "--pdf", help="With a DOI: read this PDF instead of downloading one (e.g. a paywalled paper you hold)."
    ),
    strict: bool = typer.Option(
        False, "--strict", help="With a DOI and --pdf: refuse a PDF whose DOI or title differs from the metadata."
    ),
    not_a_study_ok: bool = NotAStudyOption,
    refresh: bool = typer.Option(False, "--refresh", help="Ignore cached metadata and PDFs."),
    max_pdf_mb: float | None = MaxPdfOption,
    model: str = typer.Option(None, "--model", help="Model name. Default: $CLAIMS_MODEL or gpt-4o-mini."),
    record: Path = typer.Option(None, "--record", help="Also keep the whole run as a recording in this folder."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the model again even where a cached answer exists."),
    db: Path | None = DbOption,
) -> None:
    """Run every stage on a study with a live model and save the draft record; print its id.

    Needs OPENAI_API_KEY; OPENAI_BASE_URL selects any OpenAI-compatible endpoint. With a DOI, the
    metadata comes from Crossref, OpenAlex and Unpaywall and the open-access PDF is downloaded.
    """
    settings = RunSettings(model=model or current().model)
    base_url = current().base_url
    live = OpenAIChatModel.from_settings(current())
    chat = RecordingChatModel(live) if record else live
    store = open_store(db)
    if record:
        require_writable_folder(record.resolve().parent, "recording")
    pdf_path, metadata, pdf_url = locate_study(source, pdf, refresh, max_pdf_mb)
    progress = StageProgress(err)
    # A recording must hold every exchange, so a recorded run does not read the cache.
    cache = None if (record or no_cache) else SQLiteResponseCache(current().cache_dir / "responses.db")
    llm = LLMContext(chat, settings, cache=cache)

    def keep_recording(result: RunResult | None, failure: str | None) -> None:
        if not (record and isinstance(chat, RecordingChatModel) and (result or chat.interactions)):
            return
        save_recording(
            record,
            build_recording(
                pdf_path,
                record,
                hashlib.sha256(pdf_path.read_bytes()).hexdigest(),
                metadata,
                pdf_url,
                pdf_url is not None,
                settings,
                llm.prompts.hashes(),
                chat.interactions,
                base_url,
                failure=failure,
            ),
            result.record if result else None,
            pdf_copy=pdf_path if pdf_url else None,
        )
        what = "recording of the failed run" if failure else "recording"
        err.print(f"{what} saved to {record} ({len(chat.interactions)} model exchanges)")

    try:
        result = run_pipeline(
            pdf_path,
            llm,
            metadata=metadata,
            pdf_url=pdf_url,
            strict=strict,
            max_pdf_bytes=pdf_cap(max_pdf_mb),
            not_a_study_ok=not_a_study_ok,
            progress=progress,
        )
    except ClaimsError as exc:
        progress.stop()
        keep_recording(None, str(exc))
        raise
    finally:
        progress.stop()
    keep_recording(result, None)
    store.add(result.record, source_pages=result.document.pages)
    _summary(result)
    out.print(f"record {result.record.record_id} saved as a draft in {store.path}")


def locate_study(
    source: str, pdf: Path | None, refresh: bool, max_pdf_mb: float | None
) -> tuple[Path, StudyMetadata | None, str | None]:
    """The study's PDF, and for a DOI its metadata and where the PDF came from (fetched, or --pdf)."""
    pdf_path, doi = _source(source)
    if pdf_path is not None and pdf is not None:
        raise InputError("--pdf goes with a DOI: give either a PDF, or a DOI and --pdf FILE")
    for local in (pdf_path, pdf):  # before any download or model call: a FIFO or /dev/zero ends here
        if local is not None:
            require_regular_file(local, pdf_cap(max_pdf_mb), "PDF", "--max-pdf-mb (or CLAIMS_MAX_PDF_MB)")
    if doi is None:
        assert pdf_path is not None
        return pdf_path, None, None
    client, cache, doi_settings = doi_tools(max_pdf_mb)
    with err.status(f"looking up {doi} ..."):
        fetched = fetch(doi, client, cache, doi_settings, want_pdf=pdf is None, refresh=refresh)
    for note in fetched.notes:
        err.print(note, markup=False)
    err.print(_describe_fetch(fetched), markup=False)
    found = pdf or fetched.pdf
    assert found is not None
    return found, fetched.metadata, fetched.pdf_url


def _describe_fetch(fetched: Fetched) -> str:
    meta = fetched.metadata
    where = ", ".join(str(part) for part in (meta.journal, meta.year) if part)
    line = f"{meta.doi}: {meta.title or '(no title)'}" + (f" ({where})" if where else "")
    if meta.retracted:
        line += " [RETRACTED]"
    if fetched.pdf_url:
        line += f"; PDF from {fetched.pdf_url}" + (" (cached)" if fetched.from_cache else "")
    return line


@app.command("fetch")
@one_line_errors
def fetch_command(
    dois: list[str] = typer.Argument(..., metavar="DOI...", help="One or more DOIs."),
    output: Path = typer.Option(Path("."), "--output", "-o", help="Folder for the PDFs and metadata files."),
    refresh: bool = typer.Option(False, "--refresh", help="Ignore cached metadata and PDFs."),
    max_pdf_mb: float | None = MaxPdfOption,
) -> None:
    """Fetch metadata and the open-access PDF of each DOI, without any model call.

    Writes DOI.pdf and DOI.json (slashes as underscores) into the folder. Exit 3 when a DOI has no
    open-access PDF, 2 when one is malformed or unknown.
    """
    client, cache, settings = doi_tools(max_pdf_mb)
    worst = 0
    for text in dois:
        try:
            doi = normalise_doi(text)
            fetched = fetch(doi, client, cache, settings, refresh=refresh)
        except ClaimsError as exc:
            err.print(f"error: {exc}", markup=False)
            worst = max(worst, exc.exit_code)
            continue
        for note in fetched.notes:
            err.print(note, markup=False)
        stem = file_stem(doi)
        assert fetched.pdf is not None
        write_bytes_atomic(output / f"{stem}.pdf", fetched.pdf.read_bytes())
        write_json_atomic(
            output / f"{stem}.json", {**fetched.metadata.model_dump(mode="json"), "pdf_url": fetched.pdf_url}
        )
        out.print(_describe_fetch(fetched) + f" -> {output / stem}.pdf", markup=False)
    if worst:
        raise typer.Exit(worst)


@app.command()
@one_line_errors
def replay(
    recordings: list[Path] = typer.Argument(..., help="Recording folders (e.g. fixtures/runs/*)."),
    pdf: Path = typer.Option(None, "--pdf", help="The input PDF, if it is no longer where the recording says."),
    show: bool = typer.Option(False, "--show", help="Print the replayed record's claim page."),
) -> None:
    """Re-run recorded runs offline and compare each new record with the recorded one."""
    failed = 0
    for directory in recordings:
        try:
            _replay_one(directory, pdf, show)
        except ClaimsError as exc:
            failed += 1
            err.print(f"FAIL {directory}: {exc}", markup=False)
    if len(recordings) > 1:
        out.print(f"{len(recordings) - failed} of {len(recordings)} recordings replayed identically")
    if failed:
        raise typer.Exit(1)


def _replay_one(directory: Path, pdf_override: Path | None, show: bool) -> None:
    outcome = replay_recording(directory, pdf_override)
    against = outcome.recording.made_against.split(";")[0]
    exchanges = len(outcome.recording.interactions)
    if outcome.evaluation is not None:
        out.print(
            f"ok {directory}: accuracy {outcome.evaluation['accuracy']} as recorded (recorded against {against})",
            markup=False,
        )
        return
    if outcome.failed_as_recorded is not None:
        out.print(
            f"ok {directory}: {exchanges} recorded exchanges, failed as recorded ({outcome.failed_as_recorded})",
            markup=False,
        )
        return
    if outcome.diff:
        shown = outcome.diff[:MAX_DIFF_LINES]
        more = (
            f"\n... {len(outcome.diff) - MAX_DIFF_LINES} more diff lines" if len(outcome.diff) > MAX_DIFF_LINES else ""
        )
        err.print("\n".join(shown) + more, markup=False)
        raise ReplayError("the replayed record differs from the recorded one (diff above)")
    if show and outcome.replayed is not None:
        out.print(render(outcome.replayed, "md"), markup=False)
    out.print(
        f"ok {directory}: {exchanges} recorded exchanges, record identical (recorded against {against})", markup=False
    )


def _load_record(ref: str, db: Path | None) -> ClaimRecord:
    """A record id (or unique prefix) from the store, or a record JSON file."""
    path = Path(ref)
    if ref.endswith(".json") and path.is_file():
        return _record_from_file(path)
    return open_store(db, read_only=True).get(ref)


def _record_from_file(path: Path) -> ClaimRecord:
    try:
        return ClaimRecord.model_validate(read_json_file(path))
    except ValueError as exc:
        raise InputError(f"{path}: not a claim record ({str(exc).splitlines()[0]})") from exc


@app.command()
@one_line_errors
def show(
    record_ref: str = typer.Argument(
        ..., metavar="ID", help="Record id (a unique prefix will do) or a record.json file."
    ),
    db: Path | None = DbOption,
) -> None:
    """Show a record's claim page in the terminal."""
    record = _load_record(record_ref, db)
    out.print(Markdown(render(record, "md")))


@app.command("render")
@one_line_errors
def render_command(
    record_ref: str = typer.Argument(
        ..., metavar="ID", help="Record id (a unique prefix will do) or a record.json file."
    ),
    fmt: str = typer.Option("md", "--format", "-f", help="md, html or json."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    db: Path | None = DbOption,
) -> None:
    """Render a record's claim page as Markdown, HTML or JSON."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    record = _load_record(record_ref, db)
    text = render(record, fmt)
    if output:
        write_text_atomic(output, text)
        err.print(f"written to {output}")
        if fmt == "json" and not record_ref.endswith(".json"):
            version = open_store(db, read_only=True).version_of(record.record_id)
            err.print(
                f"(version {version}; to save your changes: claims review edit {record.record_id} "
                f"--file {output} --version {version})",
                markup=False,
            )
    else:
        sys.stdout.write(text)


@app.command()
@one_line_errors
def validate(files: list[Path] = typer.Argument(..., help="Record JSON files.")) -> None:
    """Validate record files against schemas/claim_record.schema.json."""
    invalid = 0
    for path in files:
        try:
            data = read_json_file(path)
        except InputError as exc:
            err.print(f"invalid {exc}", markup=False)
            invalid += 1
            continue
        problems = schema_errors(data)
        if problems:
            invalid += 1
            err.print(f"invalid {path}: {len(problems)} error(s)", markup=False)
            for problem in problems[:20]:
                err.print(f"  {problem}", markup=False)
        else:
            out.print(f"valid {path}", markup=False)
    if invalid:
        raise typer.Exit(1)


@app.command("check")
@one_line_errors
def check_command(
    record_file: Path = typer.Argument(..., metavar="RECORD.json", help="A record file."),
    pdf: Path = typer.Option(
        None, "--pdf", help="Its source PDF; found by itself when the record sits in a recording."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Write the checked record (corrections and results) here."
    ),
) -> None:
    """Re-run the faithfulness checks on a record against its source PDF.

    No model is called: plain language is scored, not rewritten. Exit 1 when anything is flagged.
    """
    record = _record_from_file(record_file)
    recheck_against_pdf(record, pdf or _recorded_source(record_file))
    for result in record.checks:
        out.print(f"{result.name}: {result.status.value} \u2014 {result.summary}", markup=False)
        for flag in result.flags:
            out.print(f"  FLAG {flag.code} at {flag.where}: {flag.message}", markup=False)
        for note in result.notes:
            out.print(f"  corrected {note.code} at {note.where}: {note.message}", markup=False)
    out.print(count(record.checks).line(), markup=False)
    if output:
        require_valid(record)
        write_json_atomic(output, record.model_dump(mode="json"))
        err.print(f"checked record written to {output}")
    if any(result.flags for result in record.checks):
        raise typer.Exit(1)


def _recorded_source(record_file: Path) -> Path:
    if (record_file.parent / RECORDING_FILE).is_file():
        recording, _ = load_recording(record_file.parent)
        return record_file.parent / recording.input.path
    raise InputError(f"{record_file}: pass its source PDF with --pdf")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _version(value: bool) -> None:
    if value:
        out.print(f"claims {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Turn a published study (a PDF) into a reviewed, cited evidence claim record."""
