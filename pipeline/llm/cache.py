"""The response cache: validated model answers by request fingerprint, in one SQLite file.

A fingerprint covers the model, the messages (so the prompt file, the paper's text and every
earlier stage's output), the output schema and the parameters; an unchanged batch therefore
makes no model call at all, and an edited prompt re-asks only its stage and, where their input
changes in consequence, the stages after it. Only answers that validated are ever put here.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from pipeline.core.errors import StoreError


class SQLiteResponseCache:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (fingerprint TEXT PRIMARY KEY, stage TEXT NOT NULL, "
                "content TEXT NOT NULL, stored_at TEXT NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path}: cannot open the response cache ({exc})") from exc

    def get(self, fingerprint: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT content FROM responses WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return row[0] if row else None

    def put(self, fingerprint: str, stage: str, content: str) -> None:
        stamp = datetime.now(UTC).replace(microsecond=0).isoformat()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", (fingerprint, stage, content, stamp)
            )

    def close(self) -> None:
        self._db.close()
