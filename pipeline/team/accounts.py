"""Accounts and roles, for a team reviewing on one shared store.

A store without accounts is one curator's: the review page then serves loopback only and a
decision carries the name typed. Once a store has had an account it stays a login store (only
`claims user remove-all --yes` makes it open again): the review page asks everyone to log in, and
every decision, on the page or on the command line, carries an account proven by its
credentials: the page's login, or on the command line a personal token (`CLAIMS_TOKEN`, issued
by `claims user token NAME`) or the account's password (asked, or `--password-stdin`). Whoever
holds the database's own credentials can still write the database, so keep those to the team.

Passwords are hashed with argon2id (RFC 9106's parameters, argon2-cffi's defaults, unless
CLAIMS_PASSWORD_HASHING asks for OWASP's minimum); a hash is never shown or logged.
Tokens and session secrets are random, so the store keeps their SHA-256 only.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pipeline.core.errors import InputError, ReviewRefusedError
from pipeline.core.settings import current
from pipeline.team.store import ROLES, Account, Store

# What each role may do; each role may do what the one before it may.
PERMISSIONS = {
    "reviewer": frozenset({"approve", "reject", "reopen", "edit"}),
    "curator": frozenset({"approve", "reject", "reopen", "edit", "add-evidence", "run"}),
    "admin": frozenset({"approve", "reject", "reopen", "edit", "add-evidence", "run", "manage-users"}),
}
MIN_PASSWORD = 10


@functools.cache
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def _hashing() -> PasswordHasher:
    """The hasher of CLAIMS_PASSWORD_HASHING's profile for new hashes; any stored hash verifies,
    whatever profile made it (its parameters are part of it)."""
    return _hasher(*current().password_hashing)


# Password hashes computed at once: argon2id is built to take CPU and memory, and a flood of wrong
# logins hashing on every core would starve every other request of the review page. Beyond this
# many, a login waits its turn; the pages do not.
_HASHING = threading.BoundedSemaphore(max(1, (os.cpu_count() or 2) // 2))


def require_role(role: str) -> str:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise InputError("the password is longer than 1024 characters")
    with _HASHING:
        return _hashing().hash(password)


def check_password(account: Account | None, password: str) -> bool:
    """True for an enabled account and its password. An unknown name costs a hash too, so the
    answer's timing does not tell which names exist."""
    with _HASHING:
        if account is None or account.disabled:
            _hashing().hash(password[:1024] or "x")
            return False
        try:
            return _hashing().verify(account.password_hash, password[:1024])
        except (VerificationError, InvalidHashError):
            return False


def may(account: Account, action: str) -> bool:
    return not account.disabled and action in PERMISSIONS.get(account.role, frozenset())


@dataclass(frozen=True)
class Credentials:
    """What a command-line decision proves its account with: a personal token, or a way to get
    the account's password (asked only when no token is given)."""

    token: str | None = None
    password: Callable[[], str | None] = lambda: None


def attributed(store: Store, actor: str, action: str, credentials: Credentials | None = None) -> str:
    """The name a command-line change is recorded under: any name on a store without accounts;
    on a login store, the account its credentials prove, if its role allows the action ("run":
    starting `claims run` or `claims batch`). A wrong password counts against the account's
    login limit, as on the review page."""
    actor, credentials = actor.strip(), credentials or Credentials()
    if not store.has_accounts():
        return actor
    if credentials.token:
        account = store.token_account(credentials.token)
        if account is None:
            raise ReviewRefusedError(
                "CLAIMS_TOKEN is not a live token of an enabled account of this store: ask an admin for one "
                "(claims user token NAME), or unset it to give your password"
            )
        named = store.account(actor) if actor else None
        if named is not None and named.name != account.name:
            raise ReviewRefusedError(
                f"CLAIMS_TOKEN is {account.name}'s token, not {actor}'s: a decision is its owner's"
            )
    else:
        account = _by_password(store, actor, action, credentials)
    if not may(account, action):
        raise ReviewRefusedError(
            f"{account.name} is a {account.role}: a {account.role} may not {action.replace('-', ' ')}"
        )
    return account.name


def _by_password(store: Store, actor: str, action: str, credentials: Credentials) -> Account:
    how = "set CLAIMS_REVIEWER to" if action == "run" else "pass --reviewer with"
    if not actor:
        raise ReviewRefusedError(f"this store has accounts: {how} your account name")
    limiter = LoginLimiter(store)
    keys = (f"name:{actor.lower()}",)
    if wait := limiter.wait_seconds(*keys):
        raise ReviewRefusedError(f"too many failed logins for {actor}: try again in {math.ceil(wait / 60)} minute(s)")
    password = credentials.password()
    if password is None:
        raise ReviewRefusedError(
            f"this store has accounts, so a decision needs {actor}'s credentials: set CLAIMS_TOKEN to a personal "
            f"token (an admin issues one: claims user token {actor}), or give the password "
            "(in a terminal it is asked; in a script pass --password-stdin)"
        )
    account = store.account(actor)
    if not check_password(account, password) or account is None:
        limiter.failed(*keys)
        store.note_event("login failed", actor, actor, "command line", f"to {action}")
        raise ReviewRefusedError(f"wrong account name or password for {actor!r} ({how} your account name)")
    limiter.succeeded(keys[0])
    return account


# The history note of a new draft names who started the run; `started_by` reads it back (the
# second-reviewer rule needs it), so the two are kept together here.
_DRAFTED = "drafted by the pipeline"
_STARTED = ", run started by "


def drafted_note(started_by: str) -> str:
    """The history note of a new draft: who started the run, where that is known."""
    return f"{_DRAFTED}{_STARTED}{started_by}" if started_by else _DRAFTED


def started_by(note: str) -> str | None:
    return note.removeprefix(_DRAFTED + _STARTED) if note.startswith(_DRAFTED + _STARTED) else None


class LoginLimiter:
    """At most `attempts` failed logins per account name and per client address in `window`
    seconds; then that name (or address) waits until its oldest failure is out of the window.
    Kept in the store: every server on it (and the command line) shares it, and a restart
    forgets nothing."""

    def __init__(self, store: Store, attempts: int = 5, window: float = 900.0):
        self.store, self.attempts, self.window = store, attempts, window

    def wait_seconds(self, *keys: str) -> float:
        return self.store.login_wait(keys, self.attempts, self.window)

    def failed(self, *keys: str) -> None:
        self.store.login_failed(keys, self.window)

    def succeeded(self, name_key: str) -> None:
        self.store.login_succeeded(name_key)


# --------------------------------------------------------------------------- managing accounts
# The rules of account management, one set for `claims user ...` and the admin page alike. `by`
# names who made the change in the audit log ("maria" on the page, "command line (USER)" there).


def acting_admin(store: Store, name: str, credentials: Credentials) -> str | None:
    """Who manages accounts on the command line, as on the admin page: on a store with an enabled
    admin, the admin its credentials prove (anyone else is refused); None while no admin is
    enabled (a new store's first account, or a store whose admins were all disabled), when
    whoever holds the store's own credentials acts: nobody else could."""
    if not store.enabled_admins():
        return None
    return attributed(store, name, "manage-users", credentials)


def valid_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() or c == "\x00" for c in name):
        raise InputError(f"{name!r} is not an account name: one word of at most 100 characters")
    return name


def add_user(store: Store, name: str, role: str, password: str, by: str) -> None:
    name = valid_name(name)
    store.add_account(name, require_role(role), hash_password(password))
    store.note_event("account added", by, name, detail=role)


def _require_account(store: Store, name: str) -> Account:
    account = store.account(name)
    if account is None:
        raise InputError(f"no account named {name!r}; `claims user list` shows them")
    return account


def _keeps_an_admin(store: Store, name: str, force: bool) -> None:
    if not force and store.enabled_admins() == [name]:
        raise InputError(
            f"{name} is the last enabled admin: enable or add another admin first "
            "(claims user add NAME --role admin), or pass --force to leave no admin"
        )


def disable_user(store: Store, name: str, by: str, force: bool = False) -> None:
    """Disable an account (its sessions end). The last enabled admin needs `force`; the store
    stays a login store either way."""
    _require_account(store, name)
    _keeps_an_admin(store, name, force)
    store.change_account(name, disabled=True)
    store.note_event("account disabled", by, name)


def enable_user(store: Store, name: str, by: str) -> None:
    _require_account(store, name)
    store.change_account(name, disabled=False)
    store.note_event("account enabled", by, name)


def change_role(store: Store, name: str, role: str, by: str, force: bool = False) -> None:
    account = _require_account(store, name)
    if account.role == "admin" and require_role(role) != "admin":
        _keeps_an_admin(store, name, force)
    store.change_account(name, role=require_role(role))
    store.note_event("role changed", by, name, detail=f"{account.role} -> {role}")


def reset_password(store: Store, name: str, password: str, by: str) -> None:
    _require_account(store, name)
    store.change_account(name, password_hash=hash_password(password))
    store.note_event("password reset", by, name)


def issue_token(store: Store, name: str, label: str, by: str) -> tuple[str, str]:
    """(the token's id, its secret: shown once, kept only as a hash)."""
    account = _require_account(store, name)
    if account.disabled:
        raise InputError(f"{name} is disabled: enable the account first (claims user enable {name})")
    token_id, secret = store.add_token(name, label.strip()[:200])
    store.note_event("token issued", by, name, detail=f"{token_id} {label.strip()[:100]}".strip())
    return token_id, secret


def revoke_token(store: Store, token_id: str, by: str) -> str:
    """Revoke a token; returns its account's name."""
    token = store.revoke_token(token_id.strip())
    store.note_event("token revoked", by, token.account, detail=token.token_id)
    return token.account
