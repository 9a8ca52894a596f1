"""`claims review ...`, `claims export` and `claims serve`: the reviewer's commands."""

from __future__ import annotations

import errno
import functools
import re
import shlex
import socket
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import typer
from rich.table import Table

from pipeline.cli.app import (
    DbOption,
    PasswordStdinOption,
    app,
    credentials,
    doi_tools,
    err,
    one_line_errors,
    open_store,
    out,
)
from pipeline.core.errors import ClaimsError, InputError, InvalidEditError, StoreError
from pipeline.core.files import (
    MAX_JSON_BYTES,
    read_regular_file,
    require_writable_folder,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from pipeline.core.models import ClaimRecord, ReviewStatus
from pipeline.core.settings import current
from pipeline.review import decisions
from pipeline.review.notices import recheck_notices
from pipeline.review.render import Approval, render
from pipeline.sources.metadata import publication_notices
from pipeline.team.accounts import attributed
from pipeline.team.store import Store, display_time

review_app = typer.Typer(
    help="Review drafts: list, show, approve, reject, reopen, edit, history.", no_args_is_help=True
)
app.add_typer(review_app, name="review")

STATUSES = [status.value for status in ReviewStatus]
IdArgument = typer.Argument(..., metavar="ID", help="Record id (a unique prefix will do).")
VersionOption = typer.Option(None, "--version", help="The version you reviewed (default: the current one).")


def default_reviewer() -> str:
    """One rule for every command that records a decision: --reviewer, else $CLAIMS_REVIEWER, else
    $USER; with none of them, the review rules refuse the action and say to pass --reviewer."""
    return current().reviewer


ReviewerOption = typer.Option(
    default_reviewer,
    "--reviewer",
    metavar="NAME",
    show_default="$CLAIMS_REVIEWER, else $USER",
    help="Your name, for the history (on a store with accounts, your account).",
)
NoteOption = typer.Option("", "--note", help="A note for the history (why, what was checked).")


@review_app.command("list")
@one_line_errors
def list_command(
    status: str | None = typer.Option(None, "--status", metavar="STATUS", help="draft, approved or rejected."),
    flagged: bool = typer.Option(False, "--flagged", help="Only records with flags."),
    db: str | None = DbOption,
) -> None:
    """A table of records: id, claim, study, status, flags, updated."""
    if status and status not in STATUSES:
        raise InputError(f"unknown status {status!r}: choose one of {', '.join(STATUSES)}")
    rows = open_store(db, read_only=True).summaries(status=status, flagged=flagged)
    # The id is never cut (it is what every other command takes); the claim and study wrap instead.
    table = Table(show_lines=False)
    table.add_column("id", no_wrap=True, min_width=12)
    table.add_column("claim", overflow="fold", ratio=3, min_width=12)
    table.add_column("study", overflow="fold", ratio=1, min_width=8)
    table.add_column("status", no_wrap=True)
    table.add_column("flags", no_wrap=True, justify="right")
    table.add_column("updated", overflow="fold", min_width=10, max_width=20)
    for row in rows:
        updated = display_time(row.updated_at)
        table.add_row(row.record_id, row.claim, row.study, f"{row.status} v{row.version}", str(row.flags), updated)
    out.print(table)
    out.print(f"{len(rows)} record(s)")


@review_app.command("show")
@one_line_errors
def show_command(
    record_id: str = IdArgument,
    pages_dir: Path | None = typer.Option(
        None, "--pages", metavar="DIR", help="Also write each quote's page, the quote highlighted, as PNG files here."
    ),
    db: str | None = DbOption,
) -> None:
    """The claim page, its checks, and its history; with --pages, each quote on its page."""
    store = open_store(db, read_only=True)
    record = store.get(record_id)
    if pages_dir is not None:
        require_writable_folder(pages_dir, "pages")
    from rich.markdown import Markdown  # here: markdown-it is needed by this command only

    out.print(Markdown(render(record, "md")), soft_wrap=False)  # wrapped: a cut list item would lose its citations
    _print_history(store, record.record_id, diffs=False)
    if pages_dir is not None:
        _write_pages(store, record, pages_dir)


def _write_pages(store: Store, record: ClaimRecord, folder: Path) -> None:
    """One PNG per quote (and per unfound number's nearest number): its page, highlighted."""
    from pipeline.review import pages  # here: PDFium and Pillow are needed by --pages only

    sources = decisions.stored_sources(store, record)
    marks = pages.highlights(record, {study: document.pages for study, document in sources.items()})
    written, missing = 0, set()
    papers = pages.PageCache()
    for mark in marks:
        document = pages.document_of(record, sources, mark.study_id)
        paper = papers.paper(document.sha256, functools.partial(store.pdf, document.sha256)) if document else None
        if paper is None or document is None:
            missing.add(mark.study_id or "the paper")
            continue
        boxes = paper.boxes(mark.page, document.pages[mark.page - 1], mark.start, mark.end)
        image = pages.with_highlights(paper.render(mark.page), boxes, pages.COLOURS[mark.kind])
        name = f"{mark.index:02d}-{re.sub(r'[^A-Za-z0-9]+', '_', mark.where).strip('_')}-page{mark.page}.png"
        write_bytes_atomic(folder / name, pages.png(image))
        out.print(
            f"{folder / name}: {mark.kind} on page {mark.page}"
            + (f" (similarity {mark.similarity})" if mark.kind != "quote" else ""),
            markup=False,
        )
        written += 1
    papers.close()
    if missing:
        err.print(
            f"note: the PDF of {', '.join(sorted(missing))} is not in the store (the record was stored before PDFs "
            "were kept): add it with claims db add-pdf PAPER.pdf",
            markup=False,
        )
    out.print(f"{written} page image(s) written to {folder}", markup=False)


def _print_history(store: Store, record_id: str, diffs: bool) -> None:
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
@one_line_errors
def history_command(
    record_id: str = IdArgument,
    diffs: bool = typer.Option(True, "--diffs/--no-diffs", help="Show what each change changed."),
    db: str | None = DbOption,
) -> None:
    """Every change to a record: who, when, the note, and the diff."""
    store = open_store(db, read_only=True)
    _print_history(store, store.resolve(record_id), diffs)


@review_app.command("approve")
@one_line_errors
def approve_command(
    record_id: str = IdArgument,
    reviewer: str = ReviewerOption,
    password_stdin: bool = PasswordStdinOption,
    note: str = NoteOption,
    override: str = typer.Option("", "--override", metavar="REASON", help="Approve despite flags, for this reason."),
    version: int | None = VersionOption,
    db: str | None = DbOption,
) -> None:
    """Approve a draft. Refused while it has flags, unless --override "reason"."""
    store = open_store(db)
    reviewer = attributed(store, reviewer, "approve", credentials(password_stdin))
    new = decisions.approve(store, record_id, version or store.version_of(record_id), reviewer, note, override)
    out.print(f"record {store.resolve(record_id)} approved by {reviewer} (version {new})")


@review_app.command("reject")
@one_line_errors
def reject_command(
    record_id: str = IdArgument,
    reviewer: str = ReviewerOption,
    password_stdin: bool = PasswordStdinOption,
    reason: str = typer.Option(..., "--reason", help="Why, for the history."),
    version: int | None = VersionOption,
    db: str | None = DbOption,
) -> None:
    """Reject a draft, with a reason."""
    store = open_store(db)
    reviewer = attributed(store, reviewer, "reject", credentials(password_stdin))
    new = decisions.reject(store, record_id, version or store.version_of(record_id), reviewer, reason)
    out.print(f"record {store.resolve(record_id)} rejected by {reviewer} (version {new})")


@review_app.command("reopen")
@one_line_errors
def reopen_command(
    record_id: str = IdArgument,
    reviewer: str = ReviewerOption,
    password_stdin: bool = PasswordStdinOption,
    note: str = NoteOption,
    version: int | None = VersionOption,
    db: str | None = DbOption,
) -> None:
    """Put an approved or rejected record back to draft."""
    store = open_store(db)
    reviewer = attributed(store, reviewer, "reopen", credentials(password_stdin))
    new = decisions.reopen(store, record_id, version or store.version_of(record_id), reviewer, note)
    out.print(f"record {store.resolve(record_id)} reopened by {reviewer} (version {new})")


@review_app.command("edit")
@one_line_errors
def edit_command(
    record_id: str = IdArgument,
    reviewer: str = ReviewerOption,
    password_stdin: bool = PasswordStdinOption,
    note: str = NoteOption,
    from_file: Path | None = typer.Option(
        None, "--file", help="Take the edited JSON from this file instead of $EDITOR."
    ),
    version: int | None = typer.Option(
        None, "--version", help="With --file: the version the file was taken from (claims review show prints it)."
    ),
    db: str | None = DbOption,
) -> None:
    """Edit a record's JSON in $EDITOR; on save it is validated and re-checked, or nothing is saved.

    A file (--file) must say which version it was taken from (--version): a file taken before
    someone else's change is refused instead of silently undoing it. In the editor, a refused or
    invalid edit is kept in its file, whose path is printed, so nothing typed is lost."""
    store = open_store(db)
    reviewer = attributed(store, reviewer, "edit", credentials(password_stdin))
    record, base = store.get_versioned(record_id)
    if from_file is not None:
        if version is None:
            raise InputError(
                f"--file needs --version: the version of record {record.record_id} the file was taken from "
                f"(the current one is {base}), so a newer change is never overwritten"
            )
        _save_edit(store, record.record_id, version, _edit_text(from_file), reviewer, note, kept=None)
        return
    draft = _edit_in_editor(record.model_dump_json(indent=2))
    _save_edit(store, record.record_id, base, draft.read_text(encoding="utf-8"), reviewer, note, kept=draft)


def _edit_text(path: Path) -> str:
    try:
        return read_regular_file(path, MAX_JSON_BYTES, "JSON", "a smaller file").decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; pass the record's JSON") from None


def _save_edit(
    store: Store, record_id: str, version: int, text: str, reviewer: str, note: str, kept: Path | None
) -> None:
    """Save, or say why not; an editor's file is deleted only once its edit is saved."""
    keep = (
        (
            f"; your edit is kept in {kept}: fix it and run claims review edit {record_id} --file {kept} "
            f"--version {store.version_of(record_id)}"
        )
        if kept
        else ""
    )
    try:
        saved = decisions.edit(store, record_id, version, text, reviewer, note)
    except InvalidEditError as exc:
        err.print(
            f"error: the edit is invalid; nothing was saved ({len(exc.problems)} problem(s)){keep}:", markup=False
        )
        for problem in exc.problems[:30]:
            err.print(f"  {problem}", markup=False)
        raise typer.Exit(2) from None
    except ClaimsError as exc:
        raise type(exc)(f"{exc}{keep}") from None
    if kept is not None:
        kept.unlink(missing_ok=True)
    flags = sum(len(c.flags) for c in saved.checks)
    out.print(
        f"record {saved.record_id} saved as version {version + 1} (a draft again; {flags} flag(s) after re-checking)"
    )


def _edit_in_editor(text: str) -> Path:
    """The file the reviewer edited; the caller deletes it once the edit is saved."""
    editor = current().editor
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", prefix="claims-edit-", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(text)
        path = Path(handle.name)
    completed = subprocess.run([*shlex.split(editor), str(path)], check=False)
    if completed.returncode != 0:
        raise InputError(
            f"the editor ({editor}) exited with {completed.returncode}; nothing was saved (your text is in {path})"
        )
    return path


@app.command("export")
@one_line_errors
def export_command(
    folder: Path = typer.Argument(..., metavar="DIR", help="Where to write the files."),
    status: str = typer.Option(
        "approved", "--status", metavar="STATUS", help="Which records: approved (default), draft or rejected."
    ),
    markdown: bool = typer.Option(False, "--markdown", help="Also write each claim page as Markdown."),
    db: str | None = DbOption,
) -> None:
    """One schema-valid JSON file per record (RECORD_ID.json, stable names), for publishing."""
    if status not in STATUSES:
        raise InputError(f"unknown status {status!r}: choose one of {', '.join(STATUSES)}")
    store = open_store(db, read_only=True)
    written = 0
    chosen: Iterable[tuple[ClaimRecord, Approval | None]] = (
        decisions.approved_versions(store)  # the latest approved version, even while a newer draft waits
        if status == "approved"
        else ((store.get(summary.record_id), None) for summary in store.summaries(status=status))
    )
    for record, approval in chosen:
        # validated on reading: its id is 12 hex digits, a plain file name
        write_json_atomic(_inside(folder, f"{record.record_id}.json"), record.model_dump(mode="json"))
        if markdown:
            write_text_atomic(_inside(folder, f"{record.record_id}.md"), render(record, "md", approval))
        written += 1
    out.print(f"{written} {status} record(s) written to {folder}")


@app.command("site")
@one_line_errors
def site_command(
    folder: Path = typer.Argument(..., metavar="DIR", help="Where to build the site (made if missing)."),
    base_url: str = typer.Option(
        "", "--base-url", metavar="URL", help="Where the site will be served, e.g. https://claims.example.org."
    ),
    title: str = typer.Option("Evidence claims", "--title", metavar="TEXT", help="The site's name."),
    serve: bool = typer.Option(False, "--serve", help="Then preview it on http://127.0.0.1:8001/ (Ctrl-C to stop)."),
    port: int = typer.Option(8001, "--port", help="With --serve: the port."),
    db: str | None = DbOption,
) -> None:
    """A static website of the approved claims (what claims export publishes): a page per claim,
    its quotes on their pages, a page per study, a searchable index, ClaimReview markup, and with
    --base-url a sitemap and an Atom feed. An unchanged claim's files are not rewritten."""
    from pipeline.review.publish import build_site

    if base_url and not re.match(r"https?://[^\s/]+", base_url):
        raise InputError(f"--base-url {base_url}: give an absolute http(s) address, e.g. https://claims.example.org")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} is a file: give a folder to build the site in")
    require_writable_folder(folder, "site")
    report = build_site(open_store(db, read_only=True), folder, base_url, title)
    out.print(
        f"{report.claims} claim(s) and {report.studies} study page(s) in {folder}: {report.written} file(s) written, "
        f"{report.unchanged} unchanged, {report.removed} removed, {report.images} page image(s) drawn"
    )
    for note in report.notes:
        err.print(f"note: {note}")
    if serve:
        _preview(folder, port)


def _preview(folder: Path, port: int) -> None:
    import functools
    import http.server

    listener = _listen("127.0.0.1", port)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    out.print(f"the site on http://127.0.0.1:{port}/ ; Ctrl-C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@app.command("serve")
@one_line_errors
def serve_command(
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="ADDRESS", help="Address to bind; anything but loopback exposes the review page."
    ),
    port: int = typer.Option(8000, "--port", help="Port to listen on (1-65535)."),
    allow_host: list[str] = typer.Option(
        [], "--allow-host", help="Another host name the page may be reached by (e.g. behind a proxy); repeatable."
    ),
    require_second_reviewer: bool = typer.Option(
        False,
        "--require-second-reviewer",
        help="Turn the store's four-eyes setting on (claims db settings): no one who ran or edited a record may approve it.",
    ),
    trust_proxy_user_header: str | None = typer.Option(
        None,
        "--trust-proxy-user-header",
        metavar="HEADER",
        help="Take the account from this header, set by an authenticating reverse proxy (single sign-on).",
    ),
    forwarded_allow_ips: str = typer.Option(
        "",
        "--forwarded-allow-ips",
        metavar="IPS",
        help="Comma-separated addresses of the reverse proxies whose X-Forwarded-For/-Proto to believe (default: none).",
    ),
    session_idle_minutes: float = typer.Option(
        120, "--session-idle-minutes", min=1, help="A session unused this long ends."
    ),
    session_hours: float = typer.Option(12, "--session-hours", min=0.1, help="A session ends this long after login."),
    db: str | None = DbOption,
) -> None:
    """The review web page: a queue, record pages, approve / reject / edit, history.

    On a store without accounts it serves loopback only and has no login; once an account exists
    (claims user add) everyone logs in, and it may bind other addresses. It answers only requests
    addressed to loopback names, the bound address and --allow-host names."""
    import uvicorn

    from pipeline.web import LOOPBACK_HOSTS, create_app

    if not 1 <= port <= 65535:
        raise InputError(f"--port {port} is not a port number: give one from 1 to 65535")
    store = open_store(db)
    accounts = store.has_accounts()
    if host not in LOOPBACK_HOSTS and not accounts:
        raise InputError(
            f"--host {host} would let anyone who reaches it review records: the store has no accounts, so the page "
            "has no login. Add one first (claims user add NAME --role admin), or serve on 127.0.0.1"
        )
    if trust_proxy_user_header:
        if not accounts:
            raise InputError(
                "--trust-proxy-user-header names accounts, and this store has none: claims user add NAME ..."
            )
        if host not in LOOPBACK_HOSTS:
            raise InputError(
                f"--trust-proxy-user-header with --host {host}: anyone reaching {host} directly could send the header; "
                "bind 127.0.0.1 and let only the proxy reach it"
            )
    listener = _listen(host, port)
    hosts = tuple(dict.fromkeys([*LOOPBACK_HOSTS, host, *allow_host]))
    login = (
        f"accounts from the {trust_proxy_user_header} header"
        if trust_proxy_user_header
        else ("login required" if accounts else "no accounts, no login")
    )
    out.print(f"review page on http://{host}:{port}/ (store {store.path}; {login}); Ctrl-C to stop")
    if require_second_reviewer:
        store.set_setting(decisions.SECOND_REVIEWER, "on")  # for the command line and every server too
    application = create_app(
        store,
        hosts,
        require_second_reviewer,
        trust_proxy_user_header,
        session_idle=session_idle_minutes * 60,
        session_longest=session_hours * 3600,
    )
    # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: then anyone on this machine, or
    # a proxy passing on what clients send, could pick the address the login limit counts.
    config = uvicorn.Config(
        application,
        log_level="warning",
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or "",
    )
    uvicorn.Server(config).run(sockets=[listener])


def _listen(host: str, port: int) -> socket.socket:
    """The bound socket, made before anything is printed: a port in use is one line, not a traceback."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        in_use = exc.errno == errno.EADDRINUSE
        reason = (
            "is in use: stop what uses it or pick another with --port"
            if in_use
            else f"cannot be bound ({exc.strerror})"
        )
        raise InputError(f"{host}:{port} {reason}") from None
    return listener


def _inside(folder: Path, name: str) -> Path:
    """`folder/name`, refused if it would land anywhere else (a tampered id like '../x')."""
    target = (folder / name).resolve()
    if target.parent != folder.resolve():
        raise StoreError(f"refusing to write {name!r} outside {folder}: the store holds a damaged record id")
    return target


@app.command("recheck")
@one_line_errors
def recheck_command(
    record_ids: list[str] = typer.Argument(None, metavar="ID", help="Records to recheck (an id prefix will do)."),
    every: bool = typer.Option(False, "--all", help="Recheck every stored record."),
    db: str | None = DbOption,
) -> None:
    """Ask Crossref and OpenAlex whether a record's studies were retracted, corrected or given an
    expression of concern since; a record with news becomes a new draft that says so, and leaves
    the public export until a reviewer decides. Run it from cron, e.g. weekly: claims recheck --all"""
    if not record_ids and not every:
        raise InputError("name the records to recheck, or pass --all")
    store = open_store(db)
    access = doi_tools(None)
    ids = [summary.record_id for summary in store.summaries()] if every else [store.resolve(i) for i in record_ids]
    changed = 0
    for record_id in ids:
        found = recheck_notices(store, record_id, lambda doi: publication_notices(doi, access.client, access.settings))
        if found:
            changed += 1
            out.print(f"{record_id}: now a draft again (version {store.version_of(record_id)}):", markup=False)
            for flag in found:
                out.print(f"  {flag.code}: {flag.message}", markup=False)
    out.print(f"{len(ids)} record(s) rechecked; {changed} with news about their studies", markup=False)
