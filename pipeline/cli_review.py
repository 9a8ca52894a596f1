"""`claims review ...`, `claims export` and `claims serve`: the reviewer's commands."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.markdown import Markdown
from rich.table import Table

from . import review
from .cli import DbOption, _one_line_errors, _open_store, app, err, out
from .errors import InputError
from .files import write_json_atomic, write_text_atomic
from .models import ReviewStatus
from .render import render

review_app = typer.Typer(help="Review drafts: list, show, approve, reject, reopen, edit, history.", no_args_is_help=True)
app.add_typer(review_app, name="review")

STATUSES = [status.value for status in ReviewStatus]
IdArgument = typer.Argument(..., metavar="ID", help="Record id (a unique prefix will do).")
VersionOption = typer.Option(None, "--version", help="The version you reviewed (default: the current one).")


def default_reviewer() -> str:
    return os.environ.get("CLAIMS_REVIEWER") or os.environ.get("USER") or ""


@review_app.command("list")
@_one_line_errors
def list_command(
    status: Optional[str] = typer.Option(None, "--status", help="draft, approved or rejected."),
    flagged: bool = typer.Option(False, "--flagged", help="Only records with flags."),
    db: Optional[Path] = DbOption,
) -> None:
    """A table of records: id, claim, study, status, flags, updated."""
    if status and status not in STATUSES:
        raise InputError(f"unknown status {status!r}: choose one of {', '.join(STATUSES)}")
    rows = _open_store(db).summaries(status=status, flagged=flagged)
    table = Table(show_lines=False)
    for column in ("id", "claim", "study", "status", "flags", "updated"):
        table.add_column(column, overflow="fold" if column == "claim" else "ellipsis", no_wrap=column != "claim")
    for row in rows:
        table.add_row(row.record_id, row.claim, row.study, f"{row.status} (v{row.version})", str(row.flags), row.updated_at)
    out.print(table)
    out.print(f"{len(rows)} record(s)")


@review_app.command("show")
@_one_line_errors
def show_command(record_id: str = IdArgument, db: Optional[Path] = DbOption) -> None:
    """The claim page, its checks, and its history."""
    store = _open_store(db)
    record = store.get(record_id)
    out.print(Markdown(render(record, "md")))
    _print_history(store, record.record_id, diffs=False)


def _print_history(store, record_id: str, diffs: bool) -> None:  # type: ignore[no-untyped-def]
    table = Table(title=f"history of {record_id}")
    for column in ("version", "action", "by", "at", "note"):
        table.add_column(column, overflow="fold")
    entries = store.history(record_id)
    for entry in entries:
        table.add_row(str(entry.version), entry.action, entry.actor, entry.at, entry.note)
    out.print(table)
    if diffs:
        for entry in entries:
            if entry.diff:
                out.print(f"--- version {entry.version} ({entry.action} by {entry.actor})", markup=False)
                out.print(entry.diff, markup=False, highlight=False)


@review_app.command("history")
@_one_line_errors
def history_command(
    record_id: str = IdArgument,
    diffs: bool = typer.Option(True, "--diffs/--no-diffs", help="Show what each change changed."),
    db: Optional[Path] = DbOption,
) -> None:
    """Every change to a record: who, when, the note, and the diff."""
    store = _open_store(db)
    _print_history(store, store.resolve(record_id), diffs)


@review_app.command("approve")
@_one_line_errors
def approve_command(
    record_id: str = IdArgument,
    reviewer: str = typer.Option(..., "--reviewer", help="Your name, for the history."),
    note: str = typer.Option("", "--note"),
    override: str = typer.Option("", "--override", help="Approve despite flags, for this reason."),
    version: Optional[int] = VersionOption,
    db: Optional[Path] = DbOption,
) -> None:
    """Approve a draft. Refused while it has flags, unless --override "reason"."""
    store = _open_store(db)
    new = review.approve(store, record_id, version or store.version_of(record_id), reviewer, note, override)
    out.print(f"record {store.resolve(record_id)} approved by {reviewer} (version {new})")


@review_app.command("reject")
@_one_line_errors
def reject_command(
    record_id: str = IdArgument,
    reviewer: str = typer.Option(..., "--reviewer", help="Your name, for the history."),
    reason: str = typer.Option(..., "--reason", help="Why, for the history."),
    version: Optional[int] = VersionOption,
    db: Optional[Path] = DbOption,
) -> None:
    """Reject a draft, with a reason."""
    store = _open_store(db)
    new = review.reject(store, record_id, version or store.version_of(record_id), reviewer, reason)
    out.print(f"record {store.resolve(record_id)} rejected by {reviewer} (version {new})")


@review_app.command("reopen")
@_one_line_errors
def reopen_command(
    record_id: str = IdArgument,
    reviewer: str = typer.Option(default_reviewer, "--reviewer", help="Your name (default: $CLAIMS_REVIEWER or $USER)."),
    note: str = typer.Option("", "--note"),
    version: Optional[int] = VersionOption,
    db: Optional[Path] = DbOption,
) -> None:
    """Put an approved or rejected record back to draft."""
    store = _open_store(db)
    new = review.reopen(store, record_id, version or store.version_of(record_id), reviewer, note)
    out.print(f"record {store.resolve(record_id)} reopened by {reviewer} (version {new})")


@review_app.command("edit")
@_one_line_errors
def edit_command(
    record_id: str = IdArgument,
    reviewer: str = typer.Option(default_reviewer, "--reviewer", help="Your name (default: $CLAIMS_REVIEWER or $USER)."),
    note: str = typer.Option("", "--note"),
    from_file: Optional[Path] = typer.Option(None, "--file", help="Take the edited JSON from this file instead of $EDITOR."),
    db: Optional[Path] = DbOption,
) -> None:
    """Edit a record's JSON in $EDITOR; on save it is validated and re-checked, or nothing is saved."""
    store = _open_store(db)
    record = store.get(record_id)
    version = store.version_of(record.record_id)
    if from_file is not None:
        edited = from_file.read_text(encoding="utf-8")
    else:
        edited = _edit_in_editor(record.model_dump_json(indent=2))
    try:
        saved = review.edit(store, record.record_id, version, edited, reviewer, note)
    except review.InvalidEditError as exc:
        err.print(f"error: the edit is invalid; nothing was saved ({len(exc.problems)} problem(s)):", markup=False)
        for problem in exc.problems[:30]:
            err.print(f"  {problem}", markup=False)
        raise typer.Exit(2) from None
    flags = sum(len(c.flags) for c in saved.checks)
    out.print(f"record {saved.record_id} saved as version {version + 1} (a draft again; {flags} flag(s) after re-checking)")


def _edit_in_editor(text: str) -> str:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as handle:
        handle.write(text)
        path = Path(handle.name)
    try:
        completed = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if completed.returncode != 0:
            raise InputError(f"the editor ({editor}) exited with {completed.returncode}; nothing was saved")
        return path.read_text(encoding="utf-8")
    finally:
        path.unlink(missing_ok=True)


@app.command("export")
@_one_line_errors
def export_command(
    folder: Path = typer.Argument(..., metavar="DIR", help="Where to write the files."),
    status: str = typer.Option("approved", "--status", help="Which records: approved (default), draft or rejected."),
    markdown: bool = typer.Option(False, "--markdown", help="Also write each claim page as Markdown."),
    db: Optional[Path] = DbOption,
) -> None:
    """One schema-valid JSON file per record (RECORD_ID.json, stable names), for publishing."""
    if status not in STATUSES:
        raise InputError(f"unknown status {status!r}: choose one of {', '.join(STATUSES)}")
    store = _open_store(db)
    summaries = store.summaries(status=status)
    for summary in summaries:
        record = store.get(summary.record_id)
        write_json_atomic(folder / f"{record.record_id}.json", record.model_dump(mode="json"))
        if markdown:
            write_text_atomic(folder / f"{record.record_id}.md", render(record, "md"))
    out.print(f"{len(summaries)} {status} record(s) written to {folder}")


@app.command("serve")
@_one_line_errors
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but loopback exposes the review page."),
    port: int = typer.Option(8000, "--port"),
    db: Optional[Path] = DbOption,
) -> None:
    """The review web page: a queue, record pages, approve / reject / edit, history."""
    import uvicorn

    from .web import create_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: binding {host}: anyone who can reach this address can review records (there is no login)")
    store = _open_store(db)
    out.print(f"review page on http://{host}:{port}/ (store {store.path}); Ctrl-C to stop")
    uvicorn.run(create_app(store), host=host, port=port, log_level="warning")
