"""`claims run` (one paper, live: a batch of one) and `claims fetch` (metadata and PDFs only)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli.app import (
    DbOption,
    MaxPdfOption,
    NotAStudyOption,
    PasswordStdinOption,
    StageProgress,
    VerifyOption,
    app,
    credentials,
    doi_tools,
    err,
    one_line_errors,
    open_store,
    out,
    paper_tools,
    pdf_cap,
    run_settings,
    say_adaptations,
)
from pipeline.core.errors import ClaimsError
from pipeline.core.files import require_writable_folder, write_bytes_atomic, write_json_atomic
from pipeline.core.identifiers import normalise_doi
from pipeline.core.models import ClaimRecord
from pipeline.core.settings import current
from pipeline.llm.providers import get_model
from pipeline.sources.metadata import fetch, file_stem
from pipeline.stages.check import count
from pipeline.team.accounts import attributed
from pipeline.workflow.batch import run_batch
from pipeline.workflow.paper import PaperOptions, PaperRequest, PaperResult, Tally, describe_fetch
from pipeline.workflow.pool import ParsePool


def _summary(record: ClaimRecord, result: PaperResult) -> None:
    certainty = record.certainty
    flags = sum(len(c.flags) for c in record.checks)
    out.print(f"claim: {record.claim.text}", markup=False)
    out.print(
        f"study: {record.studies[0].reference.title} ({record.studies[0].reference.study_id})\n"
        f"design: {certainty.design.value.replace('_', ' ')}; certainty: {certainty.certainty.value.replace('_', ' ')}; "
        f"findings: {len(record.studies[0].findings)}; causal steps: {len(record.mechanism.steps)}; "
        f"gold-standard studies: {len(record.gold_standard)}",
        markup=False,
    )
    out.print(f"checks: {count(record.checks).line()}", markup=False)
    if flags:
        out.print(
            f"{flags} flag(s): the record stays a draft until a reviewer resolves them (claims render {record.record_id})",
            markup=False,
        )
    cost = "" if result.cost is None else f"; estimated cost ${result.cost:.4f}"
    out.print(
        f"model calls: {result.calls}"
        + (f" ({result.cached_calls} answers from the cache)" if result.cached_calls else "")
        + f"; tokens: {result.prompt_tokens + result.completion_tokens}{cost}; {result.seconds.get('total', 0):.1f} s",
        markup=False,
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
    settings = run_settings(model, live, verify_with)
    store = open_store(db)
    started_by = attributed(store, current().reviewer, "run", credentials(password_stdin))
    if record:
        require_writable_folder(record.resolve().parent, "recording")
    request = PaperRequest(source, pdf=pdf, strict=strict, force=force, record_to=record)
    options = PaperOptions(
        concurrency=1,
        refresh=refresh,
        not_a_study_ok=not_a_study_ok,
        lease_seconds=current().lease_seconds,
        started_by=started_by,
        raise_errors=True,
    )
    progress = StageProgress(err)
    # The stages are a chain (draft writes the claim from extract's findings, grade rates that
    # claim), so no two model calls of one paper can overlap; what can is loading the model
    # client (importing openai takes about 0.35 s) while the PDF is parsed, in a process of its
    # own with a memory cap, as a batch's are (a hostile PDF ends that process, not this one).
    try:
        with ParsePool(warm=live.warm, workers=1, max_pdf_bytes=pdf_cap(max_pdf_mb)) as pool:
            tools = paper_tools(live, live, store, pool, max_pdf_mb, cached=not no_cache, progress=progress)
            [result] = run_batch([request], settings, tools, options, Tally(total=1))
    finally:
        progress.stop()
        say_adaptations(live)  # what the endpoint refused may be why the run failed
    if result.status == "already_done":
        out.print(
            f"already stored as {result.record_id}: the same paper, settings and prompts (claims show "
            f"{result.record_id}; --force runs it again)",
            markup=False,
        )
        return
    assert result.record_id is not None
    _summary(store.get(result.record_id), result)
    out.print(f"record {result.record_id} saved as a draft in {store.path}", markup=False)


@app.command("fetch")
@one_line_errors
def fetch_command(
    dois: list[str] = typer.Argument(..., metavar="DOI", help="One or more DOIs."),
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
    access = doi_tools(max_pdf_mb)
    worst = 0
    for text in dois:
        try:
            doi = normalise_doi(text)
            fetched = fetch(doi, access.client, access.cache, access.settings, refresh=refresh)
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
