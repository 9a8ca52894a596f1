"""Running claims for a team: accounts (`claims user ...`) and the store itself (`claims db ...`)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import typer
from rich.table import Table

from pipeline.accounts import hash_password, require_role
from pipeline.cli.app import DbOption, app, err, one_line_errors, open_store, out
from pipeline.errors import InputError
from pipeline.files import read_regular_file
from pipeline.settings import current
from pipeline.store import ROLES, SCHEMA_VERSION, Store, display_time, is_url

user_app = typer.Typer(help="Accounts for the review page and the history: add, list, disable, reset a password.")
db_app = typer.Typer(help="The record store: upgrade it, or copy it into another (SQLite to PostgreSQL).")
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")

NameArgument = typer.Argument(..., metavar="NAME", help="The account name (what the history shows).")
PasswordStdinOption = typer.Option(
    False, "--password-stdin", help="Read the password from the first line of stdin (scripts) instead of asking."
)


def _password(from_stdin: bool) -> str:
    """Asked twice without echo, or one line of stdin; never an argument (it would be in the
    shell's history and in the process list)."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError("no terminal to ask for a password: pass --password-stdin and the password on stdin")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@user_app.command("add")
@one_line_errors
def user_add(
    name: str = NameArgument,
    role: str = typer.Option(..., "--role", help=f"One of {', '.join(ROLES)}."),
    password_stdin: bool = PasswordStdinOption,
    db: str | None = DbOption,
) -> None:
    """Add an account. reviewers approve, reject, reopen and edit; curators also add evidence;
    admins also manage accounts. Once a store has an account, the review page asks for a login."""
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise InputError(f"{name!r} is not an account name: one word of at most 100 characters")
    require_role(role)
    store = open_store(db)
    first = not store.has_accounts()
    store.add_account(name, role, hash_password(_password(password_stdin)))
    out.print(f"account {name} added ({role})", markup=False)
    if first:
        out.print("this is the store's first account: the review page now asks everyone to log in", markup=False)


@user_app.command("list")
@one_line_errors
def user_list(db: str | None = DbOption) -> None:
    """The accounts: name, role, whether enabled, since when."""
    accounts = open_store(db, read_only=True).accounts()
    table = Table()
    for column in ("name", "role", "state", "since"):
        table.add_column(column, overflow="fold")
    for account in accounts:
        state = "disabled" if account.disabled else "enabled"
        table.add_row(account.name, account.role, state, display_time(account.created_at))
    out.print(table)
    out.print(f"{len(accounts)} account(s)")


@user_app.command("disable")
@one_line_errors
def user_disable(name: str = NameArgument, db: str | None = DbOption) -> None:
    """Stop an account from logging in (its sessions end at once; its history stays)."""
    open_store(db).change_account(name, disabled=True)
    out.print(f"account {name} disabled", markup=False)


@user_app.command("enable")
@one_line_errors
def user_enable(name: str = NameArgument, db: str | None = DbOption) -> None:
    """Let a disabled account log in again."""
    open_store(db).change_account(name, disabled=False)
    out.print(f"account {name} enabled", markup=False)


@user_app.command("role")
@one_line_errors
def user_role(
    name: str = NameArgument, role: str = typer.Argument(..., metavar="ROLE"), db: str | None = DbOption
) -> None:
    """Give an account another role."""
    open_store(db).change_account(name, role=require_role(role))
    out.print(f"account {name} is now a {role}", markup=False)


@user_app.command("reset-password")
@one_line_errors
def user_reset_password(
    name: str = NameArgument, password_stdin: bool = PasswordStdinOption, db: str | None = DbOption
) -> None:
    """Set a new password (the account's sessions end)."""
    store = open_store(db)
    if store.account(name) is None:
        raise InputError(f"no account named {name!r}; `claims user list` shows them")
    store.change_account(name, password_hash=hash_password(_password(password_stdin)))
    out.print(f"password of {name} changed; its sessions have ended", markup=False)


@db_app.command("migrate")
@one_line_errors
def db_migrate(db: str | None = DbOption) -> None:
    """Upgrade the store to this claims's schema (every command does it on open; this does only that)."""
    store = open_store(db)
    out.print(f"{store.path}: schema version {store.schema_version()} (this claims: {SCHEMA_VERSION})", markup=False)


@db_app.command("copy")
@one_line_errors
def db_copy(
    source: str = typer.Argument(..., metavar="SRC", help="The store to copy from (a SQLite file or a URL)."),
    target: str = typer.Argument(
        ..., metavar="DST", help="An empty store to copy into, e.g. postgresql://claims@db/claims."
    ),
) -> None:
    """Copy every record, its history, the stored paper text and PDFs and the accounts into an empty store,
    all in one transaction: a team that started on one laptop moves to a shared server."""
    if not is_url(source) and not Path(source).is_file():
        raise InputError(f"{source}: no such store file; give the SQLite file (or the URL) to copy from")
    origin = Store(source, read_only=True)
    counts = origin.copy_into(Store(target), progress=lambda table, n: err.print(f"{table}: {n} row(s)", markup=False))
    out.print(
        f"copied {counts['records']} record(s), {counts['history']} history entries, {counts['sources']} paper text(s), "
        f"{counts['pdfs']} PDF(s) and {counts['users']} account(s) into {Store(target).path}",
        markup=False,
    )


@db_app.command("add-pdf")
@one_line_errors
def db_add_pdf(
    files: list[Path] = typer.Argument(..., metavar="PDF...", help="Papers' PDFs."),
    db: str | None = DbOption,
) -> None:
    """Keep papers' PDFs in the store for records made before PDFs were kept, so the review page
    can show their quotes on the page. A PDF no record cites is not kept."""
    store = open_store(db)
    for path in files:
        data = read_regular_file(path, int(current().max_pdf_megabytes * 1024 * 1024), "PDF", "CLAIMS_MAX_PDF_MB")
        cited = store.add_pdf(data)
        if cited:
            out.print(f"{path}: kept, for {', '.join(cited)}", markup=False)
        else:
            err.print(
                f"{path}: no stored record cites this PDF (sha256 {hashlib.sha256(data).hexdigest()[:12]}); not kept",
                markup=False,
            )
