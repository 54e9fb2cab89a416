"""SQLite sink: the embedded default. One row per record id; duplicates are ignored."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from logctl.errors import ConfigError, PermissionDenied
from logctl.records import WireRow, format_micros, json_bytes

COLUMNS = 7
# Rows per INSERT statement at most. executemany steps the statement once per row and
# gives up the GIL at each step: while consume's main thread decodes the next batch, each
# row then waits up to the switch interval (5 ms) to get it back. A statement of thousands
# of rows steps once, and is faster alone too (twice executemany's rate here).
MOST_ROWS_PER_INSERT = 4096
# How long a batch waits for another consume's batch into the same database to be written
# (Python's default, 5 s, could make a busy shared sink fail consume).
LOCK_WAIT_S = 300.0

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
            self._db = connect(path)
            self._db.execute(SCHEMA)
            self._most_rows = rows_per_insert(self._db)
        except PermissionError as exc:
            raise PermissionDenied(f"cannot write SQLite sink {path}: permission denied") from exc
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite sink {path}: {exc}") from exc

    def prepare(self, rows: list[WireRow]) -> list[tuple[str, tuple[object, ...]]]:
        """Return the INSERT statements (text and parameters) that store these records."""
        values = [
            (rid, format_micros(micros), level, service, message, trace_id, json_bytes(attrs).decode())
            for rid, micros, level, service, message, trace_id, attrs in rows
        ]
        return [
            (_insert_sql(size), tuple(chain.from_iterable(values[start : start + size])))
            for start, size in chunks(len(values), self._most_rows)
        ]

    def store(self, batch: list[tuple[str, tuple[object, ...]]]) -> int:
        db = self._db
        before = db.total_changes
        db.execute("BEGIN")
        try:
            for sql, parameters in batch:
                db.execute(sql, parameters)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db.total_changes - before

    def close(self) -> None:
        self._db.close()


def connect(path: Path) -> sqlite3.Connection:
    """Open a database for a sink: WAL, fsync at every commit, waiting for other consumes' writes.

    Used from consume's sink thread, one batch at a time; never two threads at once.
    """
    db = sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None, check_same_thread=False)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            # Two consumes making a new database WAL at once: SQLite says "locked" at once, without waiting.
            if exc.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    db.execute("PRAGMA synchronous=FULL")
    return db


def chunks(count: int, most: int) -> Iterator[tuple[int, int]]:
    """Cut ``count`` rows into (start, size) pieces whose sizes are powers of two up to ``most``.

    So a connection prepares at most a dozen INSERT statements (SQLite's statement cache
    keeps them), whatever the sizes of the batches.
    """
    start, size = 0, most
    while start < count:
        while size > count - start:
            size //= 2
        yield start, size
        start += size


def rows_per_insert(db: sqlite3.Connection, columns: int = COLUMNS) -> int:
    """Return the most rows one INSERT takes here: a power of two, within SQLite's parameter limit.

    An older SQLite allows 999 parameters to a statement (3.32 and later 32,766).
    """
    most = min(MOST_ROWS_PER_INSERT, db.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // columns)
    return 1 << (max(most, 1).bit_length() - 1)


@functools.cache
def _insert_sql(rows: int) -> str:
    return "INSERT OR IGNORE INTO records VALUES " + ",".join([f"({','.join('?' * COLUMNS)})"] * rows)
