"""SQLite sink: the embedded default. One row per record id; duplicates are ignored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from logctl.errors import ConfigError, PermissionDenied
from logctl.records import LogRecord, format_timestamp

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id        TEXT PRIMARY KEY,
    timestamp TEXT NOT NULL,
    level     TEXT NOT NULL,
    service   TEXT NOT NULL,
    message   TEXT NOT NULL,
    trace_id  TEXT,
    attrs     TEXT NOT NULL
) WITHOUT ROWID
"""


class SqliteSink:
    """Store records in a SQLite table ``records`` (WAL, fsync on every commit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # consume writes from its sink thread, one batch at a time; never two threads at once.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)
        except PermissionError as exc:
            raise PermissionDenied(f"cannot write SQLite sink {path}: permission denied") from exc
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite sink {path}: {exc}") from exc

    def write(self, records: list[LogRecord]) -> int:
        rows = [
            (
                r.id,
                format_timestamp(r.timestamp),
                r.level.value,
                r.service,
                r.message,
                r.trace_id,
                orjson.dumps(r.attrs, default=str).decode() if r.attrs else "{}",
            )
            for r in records
        ]
        db = self._db
        before = db.total_changes
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db.total_changes - before

    def close(self) -> None:
        self._db.close()
