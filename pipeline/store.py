"""Stage 6, store: claim records in a local SQLite database, each change kept in its history.

One file (`CLAIMS_DB`, default `~/.local/share/claims/claims.db`), WAL mode so readers never
block the writer. A record is validated against the JSON Schema before it is written, inside a
transaction, so the store never holds half a record. The database carries its schema version
(`PRAGMA user_version`): an older one is upgraded on open, a newer one is refused.
"""

from __future__ import annotations

import difflib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import RecordNotFoundError, StaleVersionError, StoreError
from pipeline.models import CheckStatus, ClaimRecord, ReviewStatus
from pipeline.schema import require_valid

_MIGRATIONS = [
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
QUEUE_SORTS = {
    "updated": "updated_at DESC, id",
    "oldest": "updated_at ASC, id",
    "flags": "flags DESC, updated_at DESC, id",
    "status": "status, updated_at DESC, id",
    "claim": "claim COLLATE NOCASE, id",
}
SCHEMA_VERSION = len(_MIGRATIONS)


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


def record_diff_text(before: ClaimRecord, after: ClaimRecord) -> str:
    old = json.dumps(before.model_dump(mode="json"), indent=1, sort_keys=True, ensure_ascii=False).splitlines()
    new = json.dumps(after.model_dump(mode="json"), indent=1, sort_keys=True, ensure_ascii=False).splitlines()
    return "\n".join(difflib.unified_diff(old, new, "before", "after", lineterm="", n=1))


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def display_time(stamp: str) -> str:
    """A stored time as people read it: '2026-11-25T14:02:11+00:00' -> '2026-11-25 14:02 UTC'."""
    return f"{stamp[:10]} {stamp[11:16]} UTC" if len(stamp) >= 16 else stamp


def _stale(record_id: str, version: int, updated_by: str, updated_at: str) -> StaleVersionError:
    return StaleVersionError(
        f"record {record_id} was changed by {updated_by} at {display_time(updated_at)} (version {version}); reload and try again"
    )


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


def _open_read_only(path: Path) -> sqlite3.Connection:
    """Read-only; `immutable` when even the WAL's shared-memory file cannot be made beside it."""
    uri = path.resolve().as_uri()
    try:
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA user_version").fetchone()
        return db
    except sqlite3.OperationalError:
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)


def flag_count(record: ClaimRecord) -> int:
    return sum(len(check.flags) for check in record.checks if check.status is not CheckStatus.passed)


class SQLiteStore:
    """`read_only`: for commands that only read. A store the user may not write (a shared file,
    a read-only disk) is then opened read-only instead of failing; it must already be current."""

    def __init__(self, path: Path, read_only: bool = False):
        self.path = path
        self._lock = threading.RLock()
        try:
            if read_only and path.is_file() and not _writable(path):
                self._db = _open_read_only(path)
                self._require_current()
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            # One connection shared by a batch's worker threads, each use under the lock.
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{path}: cannot open the record store ({exc}); check the file, or set CLAIMS_DB or --db"
            ) from exc
        except OSError as exc:
            raise StoreError(
                f"{path}: cannot open the record store ({exc.strerror or exc}); "
                "check the folder's permissions, or set CLAIMS_DB or --db to a writable place"
            ) from exc

    def _require_current(self) -> None:
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        if current != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: the read-only store is version {current}, this claims reads {SCHEMA_VERSION}; "
                "open it once where it is writable to upgrade it"
            )

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        """Upgrade step by step, each in its own write transaction; the version is read again once
        the lock is held, so two processes opening an old database at once upgrade it once."""
        while True:
            with self._transaction():
                current = self._db.execute("PRAGMA user_version").fetchone()[0]
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path}: the database is version {current}, newer than this claims "
                        f"(version {SCHEMA_VERSION}); upgrade claims to open it"
                    )
                if current == SCHEMA_VERSION:
                    return
                # Statement by statement: executescript() would commit half-way.
                for statement in filter(str.strip, _MIGRATIONS[current].split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {current + 1}")

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def add(
        self,
        record: ClaimRecord,
        actor: str = "pipeline",
        note: str = "drafted by the pipeline",
        run_key: str | None = None,
        source_pages: list[str] | None = None,
    ) -> str:
        """Store a new draft (and its source's text); with a run key already stored, return that
        record's id instead."""
        require_valid(record)
        now = _now()
        study = record.studies[0].reference if record.studies else None
        with self._transaction():
            if run_key is not None and (existing := self.find_run(run_key)):
                return existing
            try:
                self._db.execute(
                    "INSERT INTO records (id, version, status, claim, study, flags, created_at, updated_at, body, run_key,"
                    " title) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.record_id,
                        record.status.value,
                        record.claim.text,
                        (study.doi or study.title) if study else "",
                        flag_count(record),
                        now,
                        now,
                        record.model_dump_json(),
                        run_key,
                        study.title if study else "",
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"a record with id {record.record_id} is already stored") from exc
            self._db.execute(
                "INSERT INTO history (record_id, version, action, actor, at, note) VALUES (?, 1, 'created', ?, ?, ?)",
                (record.record_id, actor, now, note),
            )
            if source_pages is not None:
                source = record.provenance.source
                self._db.execute(
                    "INSERT OR IGNORE INTO sources VALUES (?, ?, ?)",
                    (source.sha256, source.file_name, json.dumps(source_pages, ensure_ascii=False)),
                )
        return record.record_id

    def update(self, record: ClaimRecord, expected_version: int, action: str, actor: str, note: str) -> int:
        """Replace a record with a new version, if it is still at `expected_version`; the change,
        its author, note and diff are appended to the history. Returns the new version."""
        require_valid(record)
        with self._transaction():
            row = self._db.execute(
                "SELECT version, updated_by, updated_at, body FROM records WHERE id = ?", (record.record_id,)
            ).fetchone()
            if row is None:
                raise RecordNotFoundError(f"no record with id {record.record_id!r} in {self.path}")
            version, updated_by, updated_at, body = row
            if version != expected_version:
                raise _stale(record.record_id, version, updated_by, updated_at)
            before = _record(record.record_id, body)
            now = _now()
            self._db.execute(
                "UPDATE records SET version = ?, status = ?, claim = ?, flags = ?, updated_at = ?, updated_by = ?, body = ?,"
                " title = ? WHERE id = ?",
                (
                    version + 1,
                    record.status.value,
                    record.claim.text,
                    flag_count(record),
                    now,
                    actor,
                    record.model_dump_json(),
                    record.studies[0].reference.title if record.studies else "",
                    record.record_id,
                ),
            )
            approved_body = record.model_dump_json() if record.status is ReviewStatus.approved else None
            self._db.execute(
                "INSERT INTO history (record_id, version, action, actor, at, note, diff, body)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.record_id,
                    version + 1,
                    action,
                    actor,
                    now,
                    note,
                    record_diff_text(before, record),
                    approved_body,
                ),
            )
        return version + 1

    def published(self, id_or_prefix: str) -> tuple[ClaimRecord, HistoryEntry] | None:
        """The version readers may see: the latest approved one, even while a newer draft waits,
        with the approval (who, when, the override reason in its note); None when the record was
        never approved, or since its approval it was rejected, or a recheck found a notice about a
        study (a retraction, a correction, a concern) that no reviewer has looked at yet."""
        record_id = self.resolve(id_or_prefix)
        rows = self._rows(
            "SELECT version, action, actor, at, note, diff, body FROM history WHERE record_id = ? "
            "AND action IN ('approved', 'rejected', 'rechecked') ORDER BY seq DESC LIMIT 1",
            record_id,
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
            "SELECT version, updated_by, updated_at FROM records WHERE id = ?", record_id
        )
        if version != expected_version:
            raise _stale(record_id, version, updated_by, updated_at)

    def add_source(self, sha256: str, file_name: str, pages: list[str]) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT OR IGNORE INTO sources VALUES (?, ?, ?)",
                (sha256, file_name, json.dumps(pages, ensure_ascii=False)),
            )

    def version_of(self, id_or_prefix: str) -> int:
        [(version,)] = self._rows("SELECT version FROM records WHERE id = ?", self.resolve(id_or_prefix))
        return version

    def source_pages(self, sha256: str) -> tuple[str, list[str]] | None:
        rows = self._rows("SELECT file_name, pages FROM sources WHERE sha256 = ?", sha256)
        return (rows[0][0], json.loads(rows[0][1])) if rows else None

    def _rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def find_run(self, run_key: str) -> str | None:
        rows = self._rows("SELECT id FROM records WHERE run_key = ?", run_key)
        return rows[0][0] if rows else None

    def resolve(self, id_or_prefix: str) -> str:
        escaped = id_or_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._rows("SELECT id FROM records WHERE id LIKE ? ESCAPE '\\' LIMIT 2", escaped + "%")
        if not rows or not id_or_prefix:
            raise RecordNotFoundError(f"no record with id {id_or_prefix!r} in {self.path}")
        if len(rows) > 1:
            raise RecordNotFoundError(f"{id_or_prefix!r} matches several records; give more of the id")
        return rows[0][0]

    def get(self, id_or_prefix: str) -> ClaimRecord:
        return self.get_versioned(id_or_prefix)[0]

    def get_versioned(self, id_or_prefix: str) -> tuple[ClaimRecord, int]:
        """The record and its version from one read. A change made from what was read must name
        this version (`update`), so a writer in between makes it stale instead of being lost."""
        record_id = self.resolve(id_or_prefix)
        [(body, version)] = self._rows("SELECT body, version FROM records WHERE id = ?", record_id)
        return _record(record_id, body), version

    def queue(
        self,
        status: str | None = None,
        flagged: bool = False,
        search: str = "",
        sort: str = "updated",
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[StoredSummary], int]:
        """One page of the review queue, and how many records match in all. `search` looks in the
        claim, the study's title, its DOI and the id (case-insensitive, every word must match)."""
        where, args = [], []
        if status:
            where.append("status = ?")
            args.append(status)
        if flagged:
            where.append("flags > 0")
        for word in search.split()[:8]:
            escaped = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append(
                "(claim LIKE ? ESCAPE '\\' OR title LIKE ? ESCAPE '\\' OR study LIKE ? ESCAPE '\\'"
                " OR id LIKE ? ESCAPE '\\')"
            )
            args += [escaped] * 4
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        [(total,)] = self._rows(f"SELECT count(*) FROM records{condition}", *args)
        rows = self._rows(
            "SELECT id, version, status, claim, study, flags, updated_at, title FROM records"
            + condition
            + f" ORDER BY {QUEUE_SORTS.get(sort, QUEUE_SORTS['updated'])} LIMIT ? OFFSET ?",
            *args,
            limit,
            offset,
        )
        return [StoredSummary(*row) for row in rows], total

    def summaries(self, status: str | None = None, flagged: bool = False) -> list[StoredSummary]:
        """Every record matching, latest change first (the queue without its paging)."""
        return self.queue(status, flagged, limit=-1)[0]

    def history(self, id_or_prefix: str) -> list[HistoryEntry]:
        rows = self._rows(
            "SELECT version, action, actor, at, note, diff FROM history WHERE record_id = ? ORDER BY seq",
            self.resolve(id_or_prefix),
        )
        return [HistoryEntry(*row) for row in rows]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error: all of a change or none of it."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock):
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        try:
            self._db.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self._lock.release()
