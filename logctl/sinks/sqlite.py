"""SQLite sink: the embedded default. One row per record id; duplicates are ignored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from logctl.errors import ConfigError, PermissionDenied
from logctl.records import WireRow, format_micros

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

    def write(self, rows: list[WireRow]) -> int:
        dumps = orjson.dumps
        values = [
            (rid, format_micros(micros), level, service, message, trace_id, dumps(attrs, default=str).decode())
            for rid, micros, level, service, message, trace_id, attrs in rows
        ]
        db = self._db
        before = db.total_changes
        db.execute("BEGIN")
        try:
            db.executemany("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", values)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db.total_changes - before

    def close(self) -> None:
        self._db.close()
