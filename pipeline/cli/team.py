"""Running claims for a team: accounts (`claims user ...`) and the store itself (`claims db ...`)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import typer
from rich.table import Table

from pipeline.cli.app import DbOption, PasswordStdinOption, app, credentials, err, one_line_errors, open_store, out
from pipeline.cli.review import default_reviewer
from pipeline.core.errors import InputError
from pipeline.core.files import read_regular_file
from pipeline.core.settings import current
from pipeline.review import decisions
from pipeline.team.accounts import (
    acting_admin,
    add_user,
    change_role,
    disable_user,
    enable_user,
    issue_token,
    require_role,
    reset_password,
    revoke_token,
    valid_name,
)
from pipeline.team.store import ROLES, STORE_VERSION, Store, display_time, is_url

user_app = typer.Typer(
    help="Accounts for the review page and the history: add, list, disable, reset a password, personal tokens."
)
db_app = typer.Typer(help="The record store: its settings, upgrade it, or copy it into another (SQLite to PostgreSQL).")
app.add_typer(user_app, name="user")
app.add_typer(db_app, name="db")

NameArgument = typer.Argument(..., metavar="NAME", help="The account name (what the history shows).")

AdminOption = typer.Option(
    default_reviewer,
    "--admin",
    metavar="NAME",
    show_default="$CLAIMS_REVIEWER, else $USER",
    help="On a store with an enabled admin: the admin you act as (proved by CLAIMS_TOKEN, or the password).",
)
AdminPasswordOption = typer.Option(
    False, "--password-stdin", help="Read the admin's password from the first line of stdin instead of asking."
)


def _by(store: Store, admin: str, password_stdin: bool = False) -> str:
    """Who a change made here is made and audited under: the admin the credentials prove, on a
    store with an enabled admin (the admin page's rule); else this shell's user."""
    acting = acting_admin(store, admin, credentials(password_stdin))
    return acting or f"command line ({current().reviewer or 'unknown user'})"


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
    admin: str = AdminOption,
    db: str | None = DbOption,
) -> None:
    """Add an account. reviewers approve, reject, reopen and edit; curators also add evidence;
    admins also manage accounts. Once a store has an account, the review page asks for a login."""
    valid_name(name)
    require_role(role)
    store = open_store(db)
    first = not store.has_accounts()
    by = _by(store, admin)  # proved before the new password is read (stdin holds that one)
    add_user(store, name, role, _password(password_stdin), by)
    out.print(f"account {name.strip()} added ({role})")
    if first:
        out.print("this is the store's first account: the review page now asks everyone to log in")


@user_app.command("list")
@one_line_errors
def user_list(db: str | None = DbOption) -> None:
    """The accounts: name, role, whether enabled, since when, last login."""
    accounts = open_store(db, read_only=True).accounts()
    table = Table()
    for column in ("name", "role", "state", "since", "last login"):
        table.add_column(column, overflow="fold")
    for account in accounts:
        state = "disabled" if account.disabled else "enabled"
        last = display_time(account.last_login) if account.last_login else "never"
        table.add_row(account.name, account.role, state, display_time(account.created_at), last)
    out.print(table)
    out.print(f"{len(accounts)} account(s)")


@user_app.command("disable")
@one_line_errors
def user_disable(
    name: str = NameArgument,
    force: bool = typer.Option(
        False, "--force", help="Disable the last enabled admin too (no one can then manage accounts on the page)."
    ),
    admin: str = AdminOption,
    password_stdin: bool = AdminPasswordOption,
    db: str | None = DbOption,
) -> None:
    """Stop an account from logging in (its sessions end at once; its history stays). The store
    stays a login store even when every account is disabled."""
    store = open_store(db)
    disable_user(store, name, _by(store, admin, password_stdin), force)
    out.print(f"account {name} disabled; its sessions have ended")
    if not store.enabled_admins():
        err.print("note: no enabled admin is left; the store still asks everyone to log in")


@user_app.command("remove-all")
@one_line_errors
def user_remove_all(
    yes: bool = typer.Option(False, "--yes", help="Confirm: delete every account, session and token."),
    admin: str = AdminOption,
    password_stdin: bool = AdminPasswordOption,
    db: str | None = DbOption,
) -> None:
    """Delete every account, session and token: the store becomes an open one again (the review
    page without a login, on loopback only; decisions under any typed name). The history keeps
    its names."""
    if not yes:
        raise InputError(
            "remove-all deletes every account, session and token and makes the store open (no login): "
            "pass --yes to do it"
        )
    store = open_store(db)
    removed = store.remove_all_accounts(_by(store, admin, password_stdin))
    out.print(f"{removed} account(s) removed, with their sessions and tokens: the store has no login now")


@user_app.command("token")
@one_line_errors
def user_token(
    name: str = NameArgument,
    label: str = typer.Option("", "--label", help="What the token is for (shown in claims user tokens)."),
    admin: str = AdminOption,
    password_stdin: bool = AdminPasswordOption,
    db: str | None = DbOption,
) -> None:
    """Issue a personal token for NAME's command-line decisions (set it as CLAIMS_TOKEN). It is
    printed once; the store keeps only its hash. Revoke it with claims user revoke-token ID."""
    store = open_store(db)
    token_id, secret = issue_token(store, name, label, _by(store, admin, password_stdin))
    err.print(f"token {token_id} for {name}; it is shown this once, keep it like a password:")
    out.print(secret)


@user_app.command("tokens")
@one_line_errors
def user_tokens(
    name: str | None = typer.Argument(None, metavar="NAME", help="Only this account's tokens."),
    db: str | None = DbOption,
) -> None:
    """The personal tokens: id, account, label, when issued, last used, revoked."""
    found = open_store(db, read_only=True).tokens(name)
    table = Table()
    for column in ("id", "account", "label", "issued", "last used", "state"):
        table.add_column(column, overflow="fold")
    for token in found:
        state = f"revoked {display_time(token.revoked_at)}" if token.revoked_at else "live"
        last = display_time(token.last_used) if token.last_used else "never"
        table.add_row(token.token_id, token.account, token.label, display_time(token.created_at), last, state)
    out.print(table)
    out.print(f"{len(found)} token(s)")


@user_app.command("revoke-token")
@one_line_errors
def user_revoke_token(
    token_id: str = typer.Argument(..., metavar="ID", help="The token's id (claims user tokens lists them)."),
    admin: str = AdminOption,
    password_stdin: bool = AdminPasswordOption,
    db: str | None = DbOption,
) -> None:
    """Revoke a personal token: it proves nothing from now on."""
    store = open_store(db)
    account = revoke_token(store, token_id, _by(store, admin, password_stdin))
    out.print(f"token {token_id.strip()} of {account} revoked")


@user_app.command("enable")
@one_line_errors
def user_enable(
    name: str = NameArgument,
    admin: str = AdminOption,
    password_stdin: bool = AdminPasswordOption,
    db: str | None = DbOption,
) -> None:
    """Let a disabled account log in again."""
    store = open_store(db)
    enable_user(store, name, _by(store, admin, password_stdin))
    out.print(f"account {name} enabled")


@user_app.command("role")
@one_line_errors
def user_role(
    name: str = NameArgument,
    role: str = typer.Argument(..., metavar="ROLE"),
    force: bool = typer.Option(False, "--force", help="Take the admin role from the last enabled admin too."),
    admin: str = AdminOption,
    password_stdin: bool = AdminPasswordOption,
    db: str | None = DbOption,
) -> None:
    """Give an account another role (its sessions end)."""
    store = open_store(db)
    change_role(store, name, role, _by(store, admin, password_stdin), force)
    out.print(f"account {name} is now a {role}; its sessions have ended")


@user_app.command("reset-password")
@one_line_errors
def user_reset_password(
    name: str = NameArgument,
    password_stdin: bool = PasswordStdinOption,
    admin: str = AdminOption,
    db: str | None = DbOption,
) -> None:
    """Set a new password (the account's sessions end)."""
    store = open_store(db)
    if store.account(name) is None:
        raise InputError(f"no account named {name!r}; `claims user list` shows them")
    by = _by(store, admin)  # proved before the new password is read (stdin holds that one)
    reset_password(store, name, _password(password_stdin), by)
    out.print(f"password of {name} changed; its sessions have ended")


@db_app.command("settings")
@one_line_errors
def db_settings(
    require_second_reviewer: str | None = typer.Option(
        None,
        "--require-second-reviewer",
        metavar="on|off",
        help="Four eyes: no one who ran or edited a record may approve it, on the command line and every server.",
    ),
    admin: str = AdminOption,
    password_stdin: bool = AdminPasswordOption,
    db: str | None = DbOption,
) -> None:
    """Show the store's settings, which every command and every review server obey; change one."""
    store = open_store(db)
    if require_second_reviewer is not None:
        if require_second_reviewer not in ("on", "off"):
            raise InputError(f"--require-second-reviewer {require_second_reviewer}: say on or off")
        by = _by(store, admin, password_stdin)
        store.set_setting(decisions.SECOND_REVIEWER, require_second_reviewer)
        store.note_event("setting changed", by, detail=f"require-second-reviewer {require_second_reviewer}")
    state = "on" if decisions.second_reviewer_required(store) else "off"
    out.print(f"require-second-reviewer: {state}")
    out.print(f"accounts: {'yes (login store)' if store.has_accounts() else 'none (open store)'}")


@db_app.command("migrate")
@one_line_errors
def db_migrate(db: str | None = DbOption) -> None:
    """Upgrade the store to this claims's schema (every command does it on open; this does only that)."""
    store = open_store(db)
    found, now = store.found_version, store.schema_version()
    if found is None or found == now:
        out.print(f"{store.path}: schema version {now}, this claims's; nothing to upgrade")
    elif found == 0:
        out.print(f"{store.path}: a new store, created at schema version {now}")
    else:
        out.print(f"{store.path}: upgraded from schema version {found} to {now} (this claims's: {STORE_VERSION})")


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
    files: list[Path] = typer.Argument(..., metavar="PDF", help="Papers' PDFs."),
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
