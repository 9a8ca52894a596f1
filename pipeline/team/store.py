"""Stage 6, store: claim records and their history, in SQLite (one file, the default) or in
PostgreSQL (a team's shared store, `CLAIMS_DB=postgresql://...`).

The same queries run on both through SQLAlchemy Core, so there is one store and not two SQL
dialects to keep in step. A record is validated against the JSON Schema before it is written,
inside a transaction, so the store never holds half a record. The store carries its schema
version: an older one is upgraded on open, a newer one is refused.

Besides records the store keeps what a team shares: accounts (`users`), the review page's
sessions, personal tokens and failed logins, settings every server and the command line obey
(`meta`, e.g. the second-reviewer rule) and the leases batch workers take on papers (`leases`),
so several `claims batch` processes over the same inputs pay for each paper once. A new SQLite
store is created readable by its owner only.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError
from sqlalchemy.sql import ColumnElement

from pipeline.core.errors import InputError, RecordNotFoundError, StaleVersionError, StoreError
from pipeline.core.models import CheckStatus, ClaimRecord, ReviewStatus
from pipeline.core.schema import require_valid

tables = MetaData()
records = Table(
    "records",
    tables,
    Column("id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("claim", Text, nullable=False),
    Column("study", Text, nullable=False),
    Column("flags", Integer, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("run_key", Text),
    Column("updated_by", Text, nullable=False, server_default="pipeline"),
    Column("title", Text, nullable=False, server_default=""),
)
Index(
    "records_run_key",
    records.c.run_key,
    unique=True,
    sqlite_where=records.c.run_key.is_not(None),
    postgresql_where=records.c.run_key.is_not(None),
)
Index("records_updated", records.c.updated_at.desc(), records.c.id)
history = Table(
    "history",
    tables,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("record_id", Text, ForeignKey("records.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("diff", Text, nullable=False, server_default=""),
    Column("body", Text),  # the body of each approved version, which the public export publishes
    sqlite_autoincrement=True,
)
Index("history_record", history.c.record_id, history.c.seq)
sources = Table(
    "sources",
    tables,
    Column("sha256", Text, primary_key=True),
    Column("file_name", Text, nullable=False),
    Column("pages", Text, nullable=False),
)
users = Table(
    "users",
    tables,
    Column("name", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("last_login", Text),
)
# The review page's sessions, one row each: logging out, or a change to the account (disabled, a
# new password, another role), deletes them, so an old cookie is worth nothing. Only the hash of
# a session's secret is kept.
web_sessions = Table(
    "sessions",
    tables,
    Column("id", Text, primary_key=True),
    Column("account", Text, nullable=False),
    Column("created", Float, nullable=False),  # seconds since the epoch
    Column("seen", Float, nullable=False),
)
Index("sessions_account", web_sessions.c.account)
# Personal tokens for command-line decisions (CLAIMS_TOKEN): kept hashed, revocable.
tokens = Table(
    "tokens",
    tables,
    Column("id", Text, primary_key=True),
    Column("account", Text, nullable=False),
    Column("secret_hash", Text, nullable=False, unique=True),
    Column("label", Text, nullable=False, server_default=""),
    Column("created_at", Text, nullable=False),
    Column("last_used", Text),
    Column("revoked_at", Text),
)
# Failed logins, by account name and by client address, shared by every server on the store and
# kept across restarts; rows older than the lockout window are deleted as new ones come.
login_failures = Table(
    "login_failures",
    tables,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("at", Float, nullable=False),
    sqlite_autoincrement=True,
)
Index("login_failures_key", login_failures.c.key, login_failures.c.at)
# What admins see on the audit page: logins, failed logins, logouts and every change to an
# account or a token, with who made it and from where. Decisions on records are in `history`.
audit = Table(
    "audit",
    tables,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("subject", Text, nullable=False, server_default=""),
    Column("address", Text, nullable=False, server_default=""),
    Column("detail", Text, nullable=False, server_default=""),
    sqlite_autoincrement=True,
)
leases = Table(
    "leases",
    tables,
    Column("run_key", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires", Float, nullable=False),  # seconds since the epoch, by the holder's clock
)
meta = Table("meta", tables, Column("key", Text, primary_key=True), Column("value", Text, nullable=False))
# Each paper's PDF once, by its sha256, however many records cite it: the review page shows a
# quote on the page it stands on. Records stored before version 7 have none until it is added.
pdfs = Table("pdfs", tables, Column("sha256", Text, primary_key=True), Column("data", LargeBinary, nullable=False))

# How SQLite stores made by earlier releases reach the current schema, one step per release
# (a new store, SQLite or PostgreSQL, is created whole from the tables above).
_SQLITE_STEPS = [
    """
    CREATE TABLE records (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        status TEXT NOT NULL,
        claim TEXT NOT NULL,
        study TEXT NOT NULL,
        flags INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL REFERENCES records(id),
        version INTEGER NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        at TEXT NOT NULL,
        note TEXT NOT NULL
    );
    CREATE INDEX history_record ON history(record_id, seq);
    """,
    # 2: the run key (source PDF + everything that shapes the run), so a batch that is killed and
    # run again finds what it already stored, and never stores the same run twice.
    """
    ALTER TABLE records ADD COLUMN run_key TEXT;
    CREATE UNIQUE INDEX records_run_key ON records(run_key) WHERE run_key IS NOT NULL;
    """,
    # 3: review. Who made the last change (for the stale-edit message), each change's diff, and
    # the source text, so an edit can be re-checked against the paper without the PDF at hand.
    """
    ALTER TABLE records ADD COLUMN updated_by TEXT NOT NULL DEFAULT 'pipeline';
    ALTER TABLE history ADD COLUMN diff TEXT NOT NULL DEFAULT '';
    CREATE TABLE sources (sha256 TEXT PRIMARY KEY, file_name TEXT NOT NULL, pages TEXT NOT NULL);
    """,
    # 4: the body of each approved version, so the public export keeps publishing the latest
    # approved version while a newer draft (an edit, added evidence) waits for review.
    """
    ALTER TABLE history ADD COLUMN body TEXT;
    """,
    # 5: the queue: the first study's title to search and show, and an index for its usual order.
    """
    ALTER TABLE records ADD COLUMN title TEXT NOT NULL DEFAULT '';
    UPDATE records SET title = coalesce(json_extract(body, '$.studies[0].reference.title'), '');
    CREATE INDEX records_updated ON records(updated_at DESC, id);
    """,
]


def _team_tables(conn: Connection) -> None:
    """6: accounts, the review page's signing key and batch workers' leases."""
    for table in (users, leases, meta):
        table.create(conn)


def _pdf_table(conn: Connection) -> None:
    """7: the papers' PDFs, content-addressed."""
    pdfs.create(conn)


def _sessions_and_tokens(conn: Connection) -> None:
    """8: server-side sessions, personal tokens, failed logins kept in the store, the audit log
    and each account's last login. Written in SQLAlchemy, so it upgrades PostgreSQL stores too."""
    for table in (web_sessions, tokens, login_failures, audit):
        table.create(conn)
    # step 6 creates `users` from today's definition, which has the column already
    if "last_login" not in {column["name"] for column in inspect(conn).get_columns("users")}:
        conn.execute(text("ALTER TABLE users ADD COLUMN last_login TEXT"))


_STEPS: list[Callable[[Connection], None]] = [
    *(lambda conn, script=script: _run_script(conn, script) for script in _SQLITE_STEPS),
    _team_tables,
    _pdf_table,
    _sessions_and_tokens,
]
STORE_VERSION = len(_STEPS)
# PostgreSQL stores began at version 7; the steps from there on are written for both databases.
_POSTGRES_FROM = 7


def _run_script(conn: Connection, script: str) -> None:
    for statement in filter(str.strip, script.split(";")):
        conn.exec_driver_sql(statement)


QUEUE_SORTS: dict[str, tuple[ColumnElement[Any], ...]] = {
    "updated": (records.c.updated_at.desc(), records.c.id),
    "oldest": (records.c.updated_at.asc(), records.c.id),
    "flags": (records.c.flags.desc(), records.c.updated_at.desc(), records.c.id),
    "status": (records.c.status, records.c.updated_at.desc(), records.c.id),
    "claim": (func.lower(records.c.claim), records.c.id),
}
_HISTORY_COLUMNS = (history.c.version, history.c.action, history.c.actor, history.c.at, history.c.note, history.c.diff)
ROLES = ("reviewer", "curator", "admin")
_MIGRATION_LOCK = 7_245_311  # PostgreSQL advisory lock: two processes opening an old store upgrade it once


@dataclass(frozen=True)
class StoredSummary:
    record_id: str
    version: int
    status: str
    claim: str
    study: str
    flags: int
    updated_at: str
    title: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    version: int
    action: str
    actor: str
    at: str
    note: str
    diff: str


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    password_hash: str
    disabled: bool
    created_at: str
    last_login: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    at: str
    kind: str
    actor: str
    subject: str
    address: str
    detail: str


@dataclass(frozen=True)
class Decision:
    record_id: str
    entry: HistoryEntry


@dataclass(frozen=True)
class Token:
    token_id: str
    account: str
    label: str
    created_at: str
    last_used: str | None
    revoked_at: str | None


@dataclass(frozen=True)
class LeaseState:
    """What a worker found when it asked for a paper: it is `taken` (the worker's to run), or
    already `stored` (record_id), or `held` by another worker until `expires`."""

    outcome: str
    record_id: str | None = None
    holder: str | None = None
    expires: float | None = None


def record_diff_text(before: ClaimRecord, after: ClaimRecord) -> str:
    old = json.dumps(before.model_dump(mode="json"), indent=1, sort_keys=True, ensure_ascii=False).splitlines()
    new = json.dumps(after.model_dump(mode="json"), indent=1, sort_keys=True, ensure_ascii=False).splitlines()
    return "\n".join(difflib.unified_diff(old, new, "before", "after", lineterm="", n=1))


def _digest(secret: str) -> str:
    """What the store keeps of a session's or token's secret: random secrets need no slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def display_time(stamp: str) -> str:
    """A stored time as people read it: '2026-11-25T14:02:11+00:00' -> '2026-11-25 14:02 UTC'."""
    return f"{stamp[:10]} {stamp[11:16]} UTC" if len(stamp) >= 16 else stamp


def _stale(record_id: str, version: int, updated_by: str, updated_at: str) -> StaleVersionError:
    return StaleVersionError(
        f"record {record_id} was changed by {updated_by} at {display_time(updated_at)} (version {version}); reload and try again"
    )


def _write_ahead_log(connection: sqlite3.Connection, seconds: float = 30.0) -> None:
    """Readers never block the writer. Turning a new file to WAL needs its lock from a connection
    that may already hold a shared one, and SQLite answers "database is locked" at once there
    instead of waiting (a wait could deadlock): two batches opening a new store together failed so.
    The other opener is through in moments, so ask again until it is."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _record(record_id: str, body: str) -> ClaimRecord:
    """A stored body, validated: a store changed by hand (an id like '../x') is refused here."""
    try:
        return ClaimRecord.model_validate_json(body)
    except ValueError as exc:
        raise StoreError(
            f"record {record_id} in the store is damaged ({str(exc).splitlines()[-2].strip() if len(str(exc).splitlines()) > 1 else exc}); "
            "restore the store from a backup"
        ) from None


def _writable(path: Path) -> bool:
    """The file and its folder (SQLite writes its journal files beside it)."""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _make_private(path: Path) -> bool:
    """A new SQLite file is created readable by its owner only, whatever the umask (it holds the
    password hashes and the review page's sessions); SQLite gives its -wal and -shm files the
    same mode. Returns whether an existing file is readable by others, to warn about."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return False
    except FileExistsError:
        return bool(path.stat().st_mode & 0o077)


def _open_read_only(path: Path) -> sqlite3.Connection:
    """Read-only; `immutable` when even the WAL's shared-memory file cannot be made beside it."""
    uri = path.resolve().as_uri()
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
        db.execute("PRAGMA user_version").fetchone()
        return db
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)


def flag_count(record: ClaimRecord) -> int:
    return sum(len(check.flags) for check in record.checks if check.status is not CheckStatus.passed)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def is_url(location: str) -> bool:
    return "://" in location


def database_trouble(text: str) -> str:
    """A database failure in the user's words: a full disk, a damaged file, a locked store."""
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


def _postgres_url(location: str) -> URL:
    """postgresql://... (or postgres://) through psycopg 3, whatever driver the URL names."""
    try:
        url = make_url(location)
    except ArgumentError:
        raise InputError(
            "CLAIMS_DB (or --db) is not a database URL: expected postgresql://USER@HOST/DATABASE or a file"
        ) from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise InputError(
            f"CLAIMS_DB (or --db) names a {url.get_backend_name()!r} database: give a SQLite file or postgresql://..."
        )
    return url.set(drivername="postgresql+psycopg")


class Store:
    """The record store at `location`: a SQLite file, or a postgresql:// URL.

    `read_only`: for commands that only read. A SQLite file the user may not write (a shared
    file, a read-only disk) is then opened read-only instead of failing; it must already be
    current."""

    def __init__(self, location: str | Path, read_only: bool = False):
        location = str(location)
        self.file: Path | None = None if is_url(location) else Path(location)
        self.exposed = False  # a SQLite file that other users of the machine may read
        self.found_version: int | None = None  # the schema version the store had when opened (0: new)
        # a SQLite file this user may not write, opened only to read: it must already be current
        frozen = read_only and self.file is not None and self.file.is_file() and not _writable(self.file)
        if self.file is None:
            url = _postgres_url(location)
            self.path = url.render_as_string(hide_password=True)  # how messages name the store: never a password
            self._engine = create_engine(url, pool_pre_ping=True, pool_size=8)
            self._insert: Any = postgresql.insert
        else:
            self.path = str(self.file)
            self._engine = self._sqlite_engine(self.file, frozen)
            self._insert = sqlite.insert
        try:
            if frozen:
                with self._read() as conn:
                    self._require_current(conn)
                return
            if self.file is not None:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                self.exposed = _make_private(self.file)
            self._migrate()
        except StoreError as exc:
            if isinstance(exc.__cause__, DBAPIError):  # a damaged file, a server that refused
                raise StoreError(f"{self.path}: {exc}") from None
            raise
        except OSError as exc:
            raise StoreError(
                f"{self.path}: cannot open the record store ({exc.strerror or exc}); "
                "check the folder's permissions, or set CLAIMS_DB or --db to a writable place"
            ) from exc

    @staticmethod
    def _sqlite_engine(path: Path, read_only: bool) -> Engine:
        if read_only:
            engine = create_engine("sqlite://", creator=lambda: _open_read_only(path))
        else:
            engine = create_engine(URL.create("sqlite", database=str(path)), connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def connect(connection: sqlite3.Connection, _record: object) -> None:
            # Transactions are begun below, so that a write can take SQLite's lock at its start.
            connection.isolation_level = None
            if not read_only:
                _write_ahead_log(connection)
            connection.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(engine, "begin")
        def begin(conn: Connection) -> None:
            # BEGIN IMMEDIATE: a write waits for the lock before it reads what it will change.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        return engine

    @property
    def postgres(self) -> bool:
        return self.file is None

    # ------------------------------------------------------------------ connections

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """A driver's error as the store's own, in the user's words (the CLI prints one line)."""
        try:
            yield
        except IntegrityError:
            raise
        except DBAPIError as exc:
            raise StoreError(database_trouble(str(exc.orig).strip().splitlines()[0])) from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One transaction: all of a change or none of it."""
        with self._errors(), self._engine.connect() as conn:
            conn.execution_options(write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._errors(), self._engine.connect() as conn:
            yield conn

    def _rows(self, statement: Any) -> list[Any]:
        with self._read() as conn:
            return list(conn.execute(statement).all())

    def close(self) -> None:
        self._engine.dispose()

    # ------------------------------------------------------------------ schema

    def _version(self, conn: Connection) -> int:
        if not self.postgres:
            return int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
        if not inspect(conn).has_table("meta"):
            return 0
        value = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        return int(value) if value is not None else 0

    def _set_version(self, conn: Connection, version: int) -> None:
        if not self.postgres:
            conn.exec_driver_sql(f"PRAGMA user_version = {int(version)}")
            return
        conn.execute(delete(meta).where(meta.c.key == "schema_version"))
        conn.execute(insert(meta).values(key="schema_version", value=str(version)))

    def _require_current(self, conn: Connection) -> None:
        current = self._version(conn)
        if current != STORE_VERSION:
            raise StoreError(
                f"{self.path}: the read-only store is version {current}, this claims reads {STORE_VERSION}; "
                "open it once where it is writable to upgrade it"
            )

    def schema_version(self) -> int:
        with self._read() as conn:
            return self._version(conn)

    def _migrate(self) -> None:
        """Upgrade step by step, each in its own write transaction; the version is read again once
        the lock is held, so two processes opening an old store at once upgrade it once."""
        while True:
            with self._write() as conn:
                if self.postgres:
                    conn.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
                current = self._version(conn)
                if self.found_version is None:
                    self.found_version = current
                if current > STORE_VERSION:
                    raise StoreError(
                        f"{self.path}: the database is version {current}, newer than this claims "
                        f"(version {STORE_VERSION}); upgrade claims to open it"
                    )
                if current == STORE_VERSION:
                    return
                if current == 0 and not inspect(conn).has_table("records"):
                    tables.create_all(conn)
                    self._set_version(conn, STORE_VERSION)
                    continue
                if self.postgres and current < _POSTGRES_FROM:
                    raise StoreError(
                        f"{self.path}: the database is version {current}, which PostgreSQL stores never had"
                    )
                _STEPS[current](conn)
                self._set_version(conn, current + 1)

    # ------------------------------------------------------------------ records

    def add(
        self,
        record: ClaimRecord,
        actor: str = "pipeline",
        note: str = "drafted by the pipeline",
        run_key: str | None = None,
        source_pages: list[str] | None = None,
        pdf: bytes | None = None,
    ) -> str:
        """Store a new draft (and its source's text and PDF); with a run key already stored, return
        that record's id instead. A worker's lease on the run key ends with the record."""
        require_valid(record)
        now = _now()
        study = record.studies[0].reference if record.studies else None
        try:
            with self._write() as conn:
                if run_key is not None and (existing := self._find_run(conn, run_key)):
                    return existing
                conn.execute(
                    insert(records).values(
                        id=record.record_id,
                        version=1,
                        status=record.status.value,
                        claim=record.claim.text,
                        study=(study.doi or study.title) if study else "",
                        flags=flag_count(record),
                        created_at=now,
                        updated_at=now,
                        updated_by=actor,
                        body=record.model_dump_json(),
                        run_key=run_key,
                        title=study.title if study else "",
                    )
                )
                conn.execute(
                    insert(history).values(
                        record_id=record.record_id, version=1, action="created", actor=actor, at=now, note=note, diff=""
                    )
                )
                if source_pages is not None:
                    source = record.provenance.source
                    self._add_source(conn, source.sha256, source.file_name, source_pages)
                if pdf is not None:
                    self._add_pdf(conn, record.provenance.source.sha256, pdf)
                if run_key is not None:
                    conn.execute(delete(leases).where(leases.c.run_key == run_key))
        except IntegrityError as exc:
            # Another worker stored the same run a moment earlier (PostgreSQL lets both try).
            if run_key is not None and (existing := self.find_run(run_key)):
                return existing
            raise StoreError(f"a record with id {record.record_id} is already stored") from exc
        return record.record_id

    def update(self, record: ClaimRecord, expected_version: int, action: str, actor: str, note: str) -> int:
        """Replace a record with a new version, if it is still at `expected_version`; the change,
        its author, note and diff are appended to the history. Returns the new version."""
        require_valid(record)
        with self._write() as conn:
            row = conn.execute(
                select(records.c.version, records.c.updated_by, records.c.updated_at, records.c.body)
                .where(records.c.id == record.record_id)
                .with_for_update()  # PostgreSQL: a second writer waits here, then finds the version changed
            ).first()
            if row is None:
                raise RecordNotFoundError(f"no record with id {record.record_id!r} in {self.path}")
            version, updated_by, updated_at, body = row
            if version != expected_version:
                raise _stale(record.record_id, version, updated_by, updated_at)
            before = _record(record.record_id, body)
            now = _now()
            conn.execute(
                update(records)
                .where(records.c.id == record.record_id)
                .values(
                    version=version + 1,
                    status=record.status.value,
                    claim=record.claim.text,
                    flags=flag_count(record),
                    updated_at=now,
                    updated_by=actor,
                    body=record.model_dump_json(),
                    title=record.studies[0].reference.title if record.studies else "",
                )
            )
            conn.execute(
                insert(history).values(
                    record_id=record.record_id,
                    version=version + 1,
                    action=action,
                    actor=actor,
                    at=now,
                    note=note,
                    diff=record_diff_text(before, record),
                    body=record.model_dump_json() if record.status is ReviewStatus.approved else None,
                )
            )
        return version + 1

    def published(self, id_or_prefix: str) -> tuple[ClaimRecord, HistoryEntry] | None:
        """The version readers may see: the latest approved one, even while a newer draft waits,
        with the approval (who, when, the override reason in its note); None when the record was
        never approved, or since its approval it was rejected, or a recheck found a notice about a
        study (a retraction, a correction, a concern) that no reviewer has looked at yet."""
        record_id = self.resolve(id_or_prefix)
        rows = self._rows(
            select(*_HISTORY_COLUMNS, history.c.body)
            .where(history.c.record_id == record_id, history.c.action.in_(("approved", "rejected", "rechecked")))
            .order_by(history.c.seq.desc())
            .limit(1)
        )
        if not rows or rows[0][1] != "approved" or rows[0][6] is None:
            return None
        *entry, body = rows[0]
        return _record(record_id, body), HistoryEntry(*entry)

    def require_version(self, id_or_prefix: str, expected_version: int) -> None:
        """Refuse, as `update` would, a change meant for another version than the stored one: a
        stale decision is reported as stale before anything else is said about it."""
        record_id = self.resolve(id_or_prefix)
        [(version, updated_by, updated_at)] = self._rows(
            select(records.c.version, records.c.updated_by, records.c.updated_at).where(records.c.id == record_id)
        )
        if version != expected_version:
            raise _stale(record_id, version, updated_by, updated_at)

    def _add_source(self, conn: Connection, sha256: str, file_name: str, pages: list[str]) -> None:
        conn.execute(
            self._insert(sources)
            .values(sha256=sha256, file_name=file_name, pages=json.dumps(pages, ensure_ascii=False))
            .on_conflict_do_nothing()
        )

    def add_source(self, sha256: str, file_name: str, pages: list[str], pdf: bytes | None = None) -> None:
        with self._write() as conn:
            self._add_source(conn, sha256, file_name, pages)
            if pdf is not None:
                self._add_pdf(conn, sha256, pdf)

    def _add_pdf(self, conn: Connection, sha256: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != sha256:
            raise StoreError(f"the PDF given for {sha256[:12]} has another sha256: not stored")
        conn.execute(self._insert(pdfs).values(sha256=sha256, data=data).on_conflict_do_nothing())

    def add_pdf(self, data: bytes) -> list[str]:
        """Keep a PDF that records cite (one stored before PDFs were kept); the records it is for."""
        sha256 = hashlib.sha256(data).hexdigest()
        # a record names its studies' PDFs by sha256 in its body (provenance, source_sha256)
        cited = [str(row[0]) for row in self._rows(select(records.c.id).where(records.c.body.contains(sha256)))]
        if cited:
            with self._write() as conn:
                self._add_pdf(conn, sha256, data)
        return cited

    def has_pdf(self, sha256: str) -> bool:
        return bool(self._rows(select(pdfs.c.sha256).where(pdfs.c.sha256 == sha256)))

    def pdf(self, sha256: str) -> bytes | None:
        rows = self._rows(select(pdfs.c.data).where(pdfs.c.sha256 == sha256))
        return bytes(rows[0][0]) if rows else None

    def created_at(self, record_id: str) -> str:
        """When the record was first stored (UTC, ISO 8601)."""
        rows = self._rows(select(records.c.created_at).where(records.c.id == record_id))
        if not rows:
            raise RecordNotFoundError(f"no record with id {record_id!r} in {self.path}")
        return str(rows[0][0])

    def version_of(self, id_or_prefix: str) -> int:
        [(version,)] = self._rows(select(records.c.version).where(records.c.id == self.resolve(id_or_prefix)))
        return int(version)

    def source_pages(self, sha256: str) -> tuple[str, list[str]] | None:
        rows = self._rows(select(sources.c.file_name, sources.c.pages).where(sources.c.sha256 == sha256))
        return (rows[0][0], json.loads(rows[0][1])) if rows else None

    @staticmethod
    def _find_run(conn: Connection, run_key: str) -> str | None:
        return conn.execute(select(records.c.id).where(records.c.run_key == run_key)).scalar()

    def find_run(self, run_key: str) -> str | None:
        with self._read() as conn:
            return self._find_run(conn, run_key)

    def resolve(self, id_or_prefix: str) -> str:
        rows = self._rows(
            select(records.c.id).where(records.c.id.like(_escape_like(id_or_prefix) + "%", escape="\\")).limit(2)
        )
        if not rows or not id_or_prefix:
            raise RecordNotFoundError(f"no record with id {id_or_prefix!r} in {self.path}")
        if len(rows) > 1:
            raise RecordNotFoundError(f"{id_or_prefix!r} matches several records; give more of the id")
        return str(rows[0][0])

    def get(self, id_or_prefix: str) -> ClaimRecord:
        return self.get_versioned(id_or_prefix)[0]

    def get_versioned(self, id_or_prefix: str) -> tuple[ClaimRecord, int]:
        """The record and its version from one read. A change made from what was read must name
        this version (`update`), so a writer in between makes it stale instead of being lost."""
        record_id = self.resolve(id_or_prefix)
        [(body, version)] = self._rows(select(records.c.body, records.c.version).where(records.c.id == record_id))
        return _record(record_id, body), version

    def records(self, ids: Collection[str] | None = None) -> list[tuple[ClaimRecord, int]]:
        """Stored claims (`ids`, else every one), each at its latest version and with that
        version, from one read (matching a paper reads them all)."""
        statement = select(records.c.id, records.c.body, records.c.version).order_by(records.c.id)
        if ids is not None:
            statement = statement.where(records.c.id.in_(list(ids)))
        return [(_record(record_id, body), version) for record_id, body, version in self._rows(statement)]

    def record_versions(self) -> dict[str, int]:
        """Every stored claim's id and version, without its body: which claims a reader that keeps
        parsed ones must read again."""
        return {record_id: version for record_id, version in self._rows(select(records.c.id, records.c.version))}

    def queue(
        self,
        status: str | None = None,
        flagged: bool = False,
        search: str = "",
        sort: str = "updated",
        limit: int | None = 50,
        offset: int = 0,
    ) -> tuple[list[StoredSummary], int]:
        """One page of the review queue, and how many records match in all. `search` looks in the
        claim, the study's title, its DOI and the id (case-insensitive, every word must match)."""
        where: list[ColumnElement[bool]] = []
        if status:
            where.append(records.c.status == status)
        if flagged:
            where.append(records.c.flags > 0)
        for word in search.split()[:8]:
            pattern = f"%{_escape_like(word)}%"
            columns = (records.c.claim, records.c.title, records.c.study, records.c.id)
            where.append(or_(*(column.ilike(pattern, escape="\\") for column in columns)))
        [(total,)] = self._rows(select(func.count()).select_from(records).where(*where))
        rows = self._rows(
            select(
                records.c.id,
                records.c.version,
                records.c.status,
                records.c.claim,
                records.c.study,
                records.c.flags,
                records.c.updated_at,
                records.c.title,
            )
            .where(*where)
            .order_by(*QUEUE_SORTS.get(sort, QUEUE_SORTS["updated"]))
            .limit(limit)
            .offset(offset)
        )
        return [StoredSummary(*row) for row in rows], int(total)

    def summaries(self, status: str | None = None, flagged: bool = False) -> list[StoredSummary]:
        """Every record matching, latest change first (the queue without its paging)."""
        return self.queue(status, flagged, limit=None)[0]

    def history(self, id_or_prefix: str) -> list[HistoryEntry]:
        rows = self._rows(
            select(*_HISTORY_COLUMNS).where(history.c.record_id == self.resolve(id_or_prefix)).order_by(history.c.seq)
        )
        return [HistoryEntry(*row) for row in rows]

    # ------------------------------------------------------------------ batch workers

    def take_lease(self, run_key: str, holder: str, seconds: float, replacing: str | None = None) -> LeaseState:
        """Claim a paper for `seconds` before its first model call, unless it is stored already or
        another worker's lease on it still runs (`replacing`: a worker known to be dead). One
        statement decides between racing workers: an insert, or on a conflict an update only
        where the lease has run out."""
        now = time.time()
        try:
            with self._write() as conn:
                if existing := self._find_run(conn, run_key):
                    return LeaseState("stored", record_id=existing)
                conn.execute(
                    self._insert(leases)
                    .values(run_key=run_key, holder=holder, expires=now + seconds)
                    .on_conflict_do_update(
                        index_elements=[leases.c.run_key],
                        set_={"holder": holder, "expires": now + seconds},
                        where=(leases.c.expires < now) | leases.c.holder.in_({holder, replacing or holder}),
                    )
                )
                found = conn.execute(
                    select(leases.c.holder, leases.c.expires).where(leases.c.run_key == run_key)
                ).first()
                if existing := self._find_run(conn, run_key):  # stored while this worker waited for the row
                    return LeaseState("stored", record_id=existing)
        except IntegrityError:
            found = None
        if found is not None and found[0] == holder:
            return LeaseState("taken", expires=found[1])
        return LeaseState("held", holder=found[0] if found else None, expires=found[1] if found else None)

    def renew_lease(self, run_key: str, holder: str, seconds: float) -> bool:
        """Keep a lease while the paper runs; False when it was lost (it ran out and was taken)."""
        with self._write() as conn:
            result = conn.execute(
                update(leases)
                .where(leases.c.run_key == run_key, leases.c.holder == holder)
                .values(expires=time.time() + seconds)
            )
        return bool(result.rowcount)

    def release_lease(self, run_key: str, holder: str) -> None:
        """Give a paper back (it failed here; another worker, or a later batch, may try it)."""
        with self._write() as conn:
            conn.execute(delete(leases).where(leases.c.run_key == run_key, leases.c.holder == holder))

    # ------------------------------------------------------------------ accounts

    def add_account(self, name: str, role: str, password_hash: str) -> None:
        try:
            with self._write() as conn:
                conn.execute(
                    insert(users).values(
                        name=name, role=role, password_hash=password_hash, disabled=False, created_at=_now()
                    )
                )
        except IntegrityError:
            raise InputError(f"an account named {name!r} exists already") from None

    def account(self, name: str) -> Account | None:
        rows = self._rows(select(users).where(users.c.name == name))
        return Account(*rows[0]) if rows else None

    def accounts(self) -> list[Account]:
        return [Account(*row) for row in self._rows(select(users).order_by(users.c.name))]

    def change_account(self, name: str, **values: Any) -> None:
        """Set an account's role, password_hash or disabled. Any change ends the account's
        sessions: a disabled account, a new password or another role must log in again."""
        with self._write() as conn:
            if not conn.execute(update(users).where(users.c.name == name).values(**values)).rowcount:
                raise InputError(f"no account named {name!r}; `claims user list` shows them")
            conn.execute(delete(web_sessions).where(web_sessions.c.account == name))

    def has_accounts(self) -> bool:
        """Whether this is a login store: once it has had an account, enabled or not, the review
        page asks for a login and decisions need an account's credentials. Only
        `remove_all_accounts` makes it an open store again."""
        return bool(self._rows(select(users.c.name).limit(1)))

    def remove_all_accounts(self, by: str) -> int:
        """Delete every account, session and token: the store is open again (no login)."""
        with self._write() as conn:
            for table in (web_sessions, tokens, login_failures):
                conn.execute(delete(table))
            conn.execute(insert(audit).values(at=_now(), kind="accounts removed", actor=by, detail="remove-all"))
            return int(conn.execute(delete(users)).rowcount or 0)

    def enabled_admins(self) -> list[str]:
        rows = self._rows(select(users.c.name).where(users.c.role == "admin", users.c.disabled.is_(False)))
        return [row[0] for row in rows]

    # ------------------------------------------------------------------ sessions and tokens

    def start_session(self, account: str) -> str:
        """A new session for `account`; returns its secret (for the cookie), keeps only its hash."""
        secret, now = secrets.token_urlsafe(32), time.time()
        with self._write() as conn:
            conn.execute(insert(web_sessions).values(id=_digest(secret), account=account, created=now, seen=now))
            conn.execute(update(users).where(users.c.name == account).values(last_login=_now()))
        return secret

    def session_account(self, secret: str, idle: float, longest: float) -> Account | None:
        """The enabled account of a live session: one idle more than `idle` seconds, or older than
        `longest`, has ended (and is deleted)."""
        if not secret:
            return None
        now, key = time.time(), _digest(secret)
        rows = self._rows(
            select(web_sessions.c.account, web_sessions.c.created, web_sessions.c.seen).where(web_sessions.c.id == key)
        )
        if not rows:
            return None
        name, created, seen = rows[0]
        if now - seen > idle or now - created > longest:
            self.end_session(secret)
            return None
        if now - seen > 60:  # written at most once a minute, not on every request
            with self._write() as conn:
                conn.execute(update(web_sessions).where(web_sessions.c.id == key).values(seen=now))
        account = self.account(name)
        return account if account is not None and not account.disabled else None

    def end_session(self, secret: str) -> None:
        with self._write() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.id == _digest(secret)))

    def add_token(self, account: str, label: str = "") -> tuple[str, str]:
        """A personal token for `account`: (its id, shown in lists; its secret, shown once)."""
        token_id, secret = secrets.token_hex(4), "claims_" + secrets.token_urlsafe(32)
        with self._write() as conn:
            conn.execute(
                insert(tokens).values(
                    id=token_id, account=account, secret_hash=_digest(secret), label=label, created_at=_now()
                )
            )
        return token_id, secret

    def tokens(self, account: str | None = None, token_id: str | None = None) -> list[Token]:
        query = select(
            tokens.c.id, tokens.c.account, tokens.c.label, tokens.c.created_at, tokens.c.last_used, tokens.c.revoked_at
        ).order_by(tokens.c.account, tokens.c.created_at)
        if account is not None:
            query = query.where(tokens.c.account == account)
        if token_id is not None:
            query = query.where(tokens.c.id == token_id)
        return [Token(*row) for row in self._rows(query)]

    def revoke_token(self, token_id: str) -> Token:
        with self._write() as conn:
            done = conn.execute(
                update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=_now())
            ).rowcount
        found = self.tokens(token_id=token_id)
        if not found:
            raise InputError(f"no token {token_id!r}; `claims user tokens` lists them")
        if not done:
            raise InputError(f"token {token_id} was revoked already ({display_time(found[0].revoked_at or '')})")
        return found[0]

    def token_account(self, secret: str) -> Account | None:
        """The enabled account a live token belongs to (its last use is noted), or None."""
        rows = self._rows(
            select(tokens.c.id, tokens.c.account).where(
                tokens.c.secret_hash == _digest(secret), tokens.c.revoked_at.is_(None)
            )
        )
        if not rows:
            return None
        with self._write() as conn:
            conn.execute(update(tokens).where(tokens.c.id == rows[0][0]).values(last_used=_now()))
        account = self.account(rows[0][1])
        return account if account is not None and not account.disabled else None

    # ------------------------------------------------------------------ failed logins

    def login_wait(self, keys: tuple[str, ...], attempts: int, window: float) -> float:
        """Seconds until the first of `keys` with `attempts` failures in `window` may try again."""
        since = time.time() - window
        waits = []
        for key in keys:
            times = [
                row[0]
                for row in self._rows(
                    select(login_failures.c.at)
                    .where(login_failures.c.key == key, login_failures.c.at > since)
                    .order_by(login_failures.c.at)
                )
            ]
            if len(times) >= attempts:
                waits.append(times[-attempts] + window - time.time())
        return max(waits, default=0.0)

    def login_failed(self, keys: tuple[str, ...], window: float) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute(delete(login_failures).where(login_failures.c.at <= now - window))
            conn.execute(insert(login_failures), [{"key": key, "at": now} for key in keys])

    def login_succeeded(self, key: str) -> None:
        with self._write() as conn:
            conn.execute(delete(login_failures).where(login_failures.c.key == key))

    # ------------------------------------------------------------------ audit

    def note_event(self, kind: str, actor: str, subject: str = "", address: str = "", detail: str = "") -> None:
        with self._write() as conn:
            conn.execute(
                insert(audit).values(
                    at=_now(),
                    kind=kind,
                    actor=actor[:200],
                    subject=subject[:200],
                    address=address[:100],
                    detail=detail[:500],
                )
            )

    def audit_log(self, limit: int = 200) -> list[AuditEntry]:
        query = select(audit.c.at, audit.c.kind, audit.c.actor, audit.c.subject, audit.c.address, audit.c.detail)
        return [AuditEntry(*row) for row in self._rows(query.order_by(audit.c.seq.desc()).limit(limit))]

    def recent_decisions(self, limit: int = 200) -> list[Decision]:
        """The latest review decisions and edits on any record, newest first."""
        query = (
            select(history.c.record_id, *_HISTORY_COLUMNS)
            .where(history.c.action.in_(("approved", "rejected", "reopened", "edited", "evidence added")))
            .order_by(history.c.seq.desc())
            .limit(limit)
        )
        return [Decision(row[0], HistoryEntry(*row[1:])) for row in self._rows(query)]

    # ------------------------------------------------------------------ settings

    def setting(self, name: str) -> str | None:
        rows = self._rows(select(meta.c.value).where(meta.c.key == f"setting:{name}"))
        return str(rows[0][0]) if rows else None

    def set_setting(self, name: str, value: str) -> None:
        with self._write() as conn:
            conn.execute(delete(meta).where(meta.c.key == f"setting:{name}"))
            conn.execute(insert(meta).values(key=f"setting:{name}", value=value))

    # ------------------------------------------------------------------ copying

    def copy_into(self, target: Store, progress: Callable[[str, int], None] = lambda _t, _n: None) -> dict[str, int]:
        """Every record, its history, stored sources and accounts into an empty store (a team that
        started on one SQLite file moves to PostgreSQL), in one transaction: all or nothing."""
        if target.path == self.path:
            raise InputError("the source and the target are the same store")
        if target.queue(limit=1)[1] or target.accounts():
            raise InputError(f"{target.path} already holds records or accounts: copy into an empty store")
        counts: dict[str, int] = {}
        with self._read() as source, target._write() as conn:
            for table in (records, history, sources, users, tokens, pdfs):
                counts[table.name] = 0
                # streamed in parts, a few PDFs at a time: they alone may be more than memory holds
                rows = 4 if table is pdfs else 500
                for part in source.execution_options(yield_per=rows).execute(select(table)).partitions():
                    conn.execute(insert(table), [dict(row._mapping) for row in part])
                    counts[table.name] += len(part)
                progress(table.name, counts[table.name])
            if target.postgres and counts["history"]:  # the copied seq values are taken; new ones follow them
                conn.execute(
                    text("SELECT setval(pg_get_serial_sequence('history', 'seq'), (SELECT max(seq) FROM history))")
                )
        return counts
