"""`claims run` (one paper, live) and `claims fetch` (metadata and PDFs only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer

from pipeline.accounts import attributed, drafted_note
from pipeline.cli.app import (
    DbOption,
    MaxPdfOption,
    NotAStudyOption,
    PasswordStdinOption,
    StageProgress,
    VerifyOption,
    app,
    credentials,
    describe_fetch,
    doi_tools,
    err,
    locate_study,
    one_line_errors,
    open_store,
    out,
    pdf_cap,
    run_settings,
    say_adaptations,
)
from pipeline.core.errors import ClaimsError
from pipeline.core.files import (
    require_writable_folder,
    write_bytes_atomic,
    write_json_atomic,
)
from pipeline.core.identifiers import normalise_doi
from pipeline.core.settings import current
from pipeline.llm.base import LLMContext, RecordingChatModel
from pipeline.llm.cache import SQLiteResponseCache
from pipeline.llm.providers import get_model
from pipeline.llm.recording import (
    build_recording,
    save_recording,
)
from pipeline.pool import ParsePool
from pipeline.run import RunResult, run_key, run_pipeline, run_prompts
from pipeline.sources.metadata import fetch, file_stem
from pipeline.stages.check import count


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


@app.command()
@one_line_errors
def run(
    source: str = typer.Argument(
        ..., metavar="PDF|DOI", help="The study: a PDF file, or a DOI (10.xxxx/..., doi:..., https://doi.org/...)."
    ),
    pdf: Path = typer.Option(
        None,
        "--pdf",
        metavar="PDF",
        help="With a DOI: read this PDF instead of downloading one (e.g. a paywalled paper you hold).",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="With a DOI and --pdf: refuse a PDF whose DOI or title differs from the metadata."
    ),
    not_a_study_ok: bool = NotAStudyOption,
    refresh: bool = typer.Option(False, "--refresh", help="Ignore cached metadata and PDFs."),
    max_pdf_mb: float | None = MaxPdfOption,
    model: str = typer.Option(
        None, "--model", metavar="MODEL", help="Model name. Default: $CLAIMS_MODEL or gpt-4o-mini."
    ),
    record: Path = typer.Option(
        None, "--record", metavar="DIR", help="Also keep the whole run as a recording in this folder."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the model again even where a cached answer exists."),
    force: bool = typer.Option(
        False, "--force", help="Run and store the paper even if the same run (PDF, settings, prompts) is stored."
    ),
    verify_with: str | None = VerifyOption,
    password_stdin: bool = PasswordStdinOption,
    db: str | None = DbOption,
) -> None:
    """Run every stage on a study with a live model and save the draft record; print its id.

    Needs OPENAI_API_KEY; OPENAI_BASE_URL selects any OpenAI-compatible endpoint. With a DOI, the
    metadata comes from Crossref, OpenAlex and Unpaywall and the open-access PDF is downloaded.
    """
    live = get_model(current())
    settings, base_url = run_settings(model, live, verify_with), current().base_url
    chat = RecordingChatModel(live) if record else live
    store = open_store(db)
    started_by = attributed(store, current().reviewer, "run", credentials(password_stdin))
    if record:
        require_writable_folder(record.resolve().parent, "recording")
    pdf_path, metadata, pdf_url = locate_study(source, pdf, refresh, max_pdf_mb)
    progress = StageProgress(err)
    # A recording must hold every exchange, so a recorded run does not read the cache.
    cache = None if (record or no_cache) else SQLiteResponseCache(current().cache_dir / "responses.db")
    llm = LLMContext(chat, settings, cache=cache)
    pdf_bytes = pdf_path.read_bytes()
    sha256 = hashlib.sha256(pdf_bytes).hexdigest()
    key = run_key(sha256, settings, metadata, run_prompts(llm.prompts, settings))
    if (existing := store.find_run(key)) and not force:
        out.print(
            f"already stored as {existing}: the same paper, settings and prompts (claims show {existing}; "
            "--force runs it again)",
            markup=False,
        )
        return
    # The stages are a chain (draft writes the claim from extract's findings, grade rates that
    # claim), so no two model calls of one paper can overlap; what can is loading the model
    # client (importing openai takes about 0.35 s) while the PDF is parsed, in a process of its
    # own with a memory cap, as a batch's are (a hostile PDF ends that process, not this one).
    parsing = ParsePool(warm=live.warm, workers=1, max_pdf_bytes=pdf_cap(max_pdf_mb))

    def keep_recording(result: RunResult | None, failure: str | None) -> None:
        if not (record and isinstance(chat, RecordingChatModel) and (result or chat.interactions)):
            return
        save_recording(
            record,
            build_recording(
                pdf_path,
                record,
                sha256,
                metadata,
                pdf_url,
                settings,
                run_prompts(llm.prompts, settings),
                chat.interactions,
                base_url,
                failure=failure,
                details=tuple(live.adaptations),
            ),
            result.record if result else None,
            pdf_path,
        )
        what = "recording of the failed run" if failure else "recording"
        err.print(f"{what} saved to {record} ({len(chat.interactions)} model exchanges)")

    try:
        with parsing:
            result = run_pipeline(
                pdf_path,
                llm,
                metadata=metadata,
                pdf_url=pdf_url,
                strict=strict,
                read=parsing.parse,
                not_a_study_ok=not_a_study_ok,
                progress=progress,
            )
    except ClaimsError as exc:
        progress.stop()
        keep_recording(None, str(exc))
        say_adaptations(live)  # what the endpoint refused may be why the run failed
        raise
    finally:
        progress.stop()
    keep_recording(result, None)
    say_adaptations(live)
    store.add(
        result.record,
        note=drafted_note(started_by),
        run_key=None if existing else key,
        source_pages=result.document.pages,
        pdf=pdf_bytes,
    )
    _summary(result)
    out.print(f"record {result.record.record_id} saved as a draft in {store.path}")


@app.command("fetch")
@one_line_errors
def fetch_command(
    dois: list[str] = typer.Argument(..., metavar="DOI...", help="One or more DOIs."),
    output: Path = typer.Option(
        Path("."), "--output", "-o", metavar="DIR", help="Folder for the PDFs and metadata files."
    ),
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
        out.print(describe_fetch(fetched) + f" -> {output / stem}.pdf", markup=False)
    if worst:
        raise typer.Exit(worst)
