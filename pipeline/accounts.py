"""Accounts and roles, for a team reviewing on one shared store.

A store without accounts is one curator's: the review page then serves loopback only and a
decision carries the name typed. Once an account exists, the review page asks everyone to log in
and every decision carries the logged-in account. On the command line, a decision must then name
an enabled account whose role allows it (`--reviewer`, `$CLAIMS_REVIEWER`, `$USER`): that keeps
the history's names to real accounts, but it is not a lock; whoever holds the database's
credentials can write the database, so keep those to the team.

Passwords are hashed with argon2id (argon2-cffi's defaults); a hash is never shown or logged.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict, deque

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pipeline.errors import InputError, ReviewRefusedError
from pipeline.store import ROLES, Account, Store

# What each role may do; each role may do what the one before it may.
PERMISSIONS = {
    "reviewer": frozenset({"approve", "reject", "reopen", "edit"}),
    "curator": frozenset({"approve", "reject", "reopen", "edit", "add-evidence", "run"}),
    "admin": frozenset({"approve", "reject", "reopen", "edit", "add-evidence", "run", "manage-users"}),
}
MIN_PASSWORD = 10
_hasher = PasswordHasher()


def require_role(role: str) -> str:
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password is too short: use at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise InputError("the password is longer than 1024 characters")
    return _hasher.hash(password)


def check_password(account: Account | None, password: str) -> bool:
    """True for an enabled account and its password. An unknown name costs a hash too, so the
    answer's timing does not tell which names exist."""
    if account is None or account.disabled:
        _hasher.hash(password[:1024] or "x")
        return False
    try:
        return _hasher.verify(account.password_hash, password[:1024])
    except (VerificationError, InvalidHashError):
        return False


def session_stamp(account: Account) -> str:
    """Changes when the password does: a session made before a reset is no longer accepted."""
    return hashlib.sha256(account.password_hash.encode()).hexdigest()[:16]


def may(account: Account, action: str) -> bool:
    return not account.disabled and action in PERMISSIONS.get(account.role, frozenset())


def attributed(store: Store, actor: str, action: str) -> str:
    """The name a command-line change is recorded under: any name on a store without accounts;
    on one with accounts, an enabled account whose role allows the action ("run": starting
    `claims run` or `claims batch`, as $CLAIMS_REVIEWER or $USER)."""
    actor = actor.strip()
    if not actor or not store.has_accounts():
        return actor
    account = store.account(actor)
    if account is None or account.disabled:
        how = "set CLAIMS_REVIEWER to" if action == "run" else "pass --reviewer with"
        raise ReviewRefusedError(
            f"{actor!r} is not an enabled account of this store: {how} your account name (claims user list shows them)"
        )
    if not may(account, action):
        raise ReviewRefusedError(f"{actor} is a {account.role}: a {account.role} may not {action.replace('-', ' ')}")
    return actor


def drafted_note(started_by: str) -> str:
    """The history note of a new draft: who started the run, where that is known."""
    return f"drafted by the pipeline, run started by {started_by}" if started_by else "drafted by the pipeline"


class LoginLimiter:
    """At most `attempts` failed logins per account name and per client address in `window`
    seconds; then that name (or address) waits until its oldest failure is out of the window."""

    def __init__(self, attempts: int = 5, window: float = 900.0):
        self.attempts, self.window = attempts, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def wait_seconds(self, *keys: str) -> float:
        now = time.monotonic()
        with self._lock:
            waits = []
            for key in keys:
                failures = self._failures[key]
                while failures and failures[0] <= now - self.window:
                    failures.popleft()
                if len(failures) >= self.attempts:
                    waits.append(failures[0] + self.window - now)
            return max(waits, default=0.0)

    def failed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures[key].append(time.monotonic())

    def succeeded(self, name_key: str) -> None:
        with self._lock:
            self._failures.pop(name_key, None)
