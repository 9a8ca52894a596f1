"""Commands over records and recordings, no model called: replay, show, render, validate, check."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pipeline.cli.app import DbOption, app, err, one_line_errors, open_store, out
from pipeline.core.errors import ClaimsError, InputError, ReplayError
from pipeline.core.files import (
    read_json_file,
    write_json_atomic,
    write_text_atomic,
)
from pipeline.core.models import ClaimRecord
from pipeline.core.schema import require_valid, schema_errors
from pipeline.llm.recording import (
    RECORDING_FILE,
    load_recording,
)
from pipeline.review.decisions import recheck_against_pdf
from pipeline.review.render import FORMATS, render
from pipeline.stages.check import count
from pipeline.workflow.pool import read_alone
from pipeline.workflow.replay import replay as replay_recording


@app.command()
@one_line_errors
def replay(
    recordings: list[Path] = typer.Argument(..., metavar="DIR", help="Recording folders (e.g. fixtures/runs/*)."),
    pdf: Path = typer.Option(
        None, "--pdf", metavar="PDF", help="The input PDF, if it is no longer where the recording says."
    ),
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


MAX_DIFF_LINES = 200


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


def _load_record(ref: str, db: str | None) -> ClaimRecord:
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
    db: str | None = DbOption,
) -> None:
    """Show a record's claim page in the terminal."""
    record = _load_record(record_ref, db)
    from rich.markdown import Markdown  # here: markdown-it is needed by this command only

    out.print(Markdown(render(record, "md")), soft_wrap=False)  # wrapped: a cut list item would lose its citations


@app.command("render")
@one_line_errors
def render_command(
    record_ref: str = typer.Argument(
        ..., metavar="ID", help="Record id (a unique prefix will do) or a record.json file."
    ),
    fmt: str = typer.Option("md", "--format", "-f", metavar="md|html|json", help="md, html or json."),
    output: Path = typer.Option(None, "--output", "-o", metavar="FILE", help="Write to this file instead of stdout."),
    db: str | None = DbOption,
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
def validate(files: list[Path] = typer.Argument(..., metavar="RECORD.json", help="Record JSON files.")) -> None:
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
        None, "--pdf", metavar="PDF", help="Its source PDF; found by itself when the record sits in a recording."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", metavar="FILE", help="Write the checked record (corrections and results) here."
    ),
) -> None:
    """Re-run the faithfulness checks on a record against its source PDF.

    No model is called: plain language is scored, not rewritten. Exit 1 when anything is flagged.
    """
    record = _record_from_file(record_file)
    recheck_against_pdf(record, pdf or _recorded_source(record_file), read=read_alone)
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
