"""SQLite sink: the embedded default. One row per record id; duplicates are ignored.

The schema (version 2, in ``PRAGMA user_version``) is documented in the README's
"Finding records": a rowid table ``records`` whose ``seq`` orders rows as they were
stored, indexes for time, level, service and trace id, and ``records_fts``, an FTS5
index of the messages that refers to the table's rows (external content: the text is
stored once). A store of version 1 (logctl before ``query``: a ``WITHOUT ROWID`` table
and no index) is migrated when it is first opened.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from logctl.errors import ConfigError, PermissionDenied
from logctl.records import WireRow, format_micros, json_bytes
from logctl.sinks import PRUNE_CHUNK

SCHEMA_VERSION = 2
# The columns a batch inserts (``seq`` is the rowid SQLite assigns).
INSERT_COLUMNS = ("id", "timestamp", "level", "service", "message", "trace_id", "attrs")
COLUMNS = len(INSERT_COLUMNS)
# Rows per INSERT statement at most. executemany steps the statement once per row and
# gives up the GIL at each step: while consume's main thread decodes the next batch, each
# row then waits up to the switch interval (5 ms) to get it back. A statement of thousands
# of rows steps once, and is faster alone too (twice executemany's rate here).
MOST_ROWS_PER_INSERT = 4096
# How long a batch waits for another consume's batch into the same database to be written
# (Python's default, 5 s, could make a busy shared sink fail consume).
LOCK_WAIT_S = 300.0

SCHEMA = (
    """CREATE TABLE records (
        seq       INTEGER PRIMARY KEY,
        id        TEXT NOT NULL UNIQUE,
        timestamp TEXT NOT NULL,
        level     TEXT NOT NULL,
        service   TEXT NOT NULL,
        message   TEXT NOT NULL,
        trace_id  TEXT,
        attrs     TEXT NOT NULL
    )""",
    "CREATE INDEX records_timestamp ON records (timestamp)",
    # One index for service and level rather than one each: every index costs each stored
    # record a B-tree insert (0.6-0.8 us here), and a level alone is served well enough by
    # the time index (newest first, or a --since range). See benchmarks/query.py.
    "CREATE INDEX records_service_level ON records (service, level, timestamp)",
    "CREATE INDEX records_trace_id ON records (trace_id) WHERE trace_id IS NOT NULL",
    # columnsize=0: no per-row size table, which only bm25 ranking reads (query orders by
    # time), and one B-tree insert less per record. remove_diacritics 0: "café" is not
    # "cafe", as in the PostgreSQL sink's 'simple' configuration, so both answer alike.
    """CREATE VIRTUAL TABLE records_fts USING fts5(
        message, content='records', content_rowid='seq', columnsize=0,
        tokenize='unicode61 remove_diacritics 0'
    )""",
    # Batches index their new rows in one statement (see SqliteSink.store, a sixth faster
    # than a trigger per row); deletes and updates by anyone keep the index in step here.
    """CREATE TRIGGER records_fts_delete AFTER DELETE ON records BEGIN
        INSERT INTO records_fts (records_fts, rowid, message) VALUES ('delete', old.seq, old.message);
    END""",
    """CREATE TRIGGER records_fts_update AFTER UPDATE OF message ON records BEGIN
        INSERT INTO records_fts (records_fts, rowid, message) VALUES ('delete', old.seq, old.message);
        INSERT INTO records_fts (rowid, message) VALUES (new.seq, new.message);
    END""",
)
_INDEX_NEW_ROWS = "INSERT INTO records_fts (rowid, message) SELECT seq, message FROM records WHERE seq > ?"


class SqliteSink:
    """Store records in a SQLite table ``records`` (WAL, fsync on every commit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.migrated = 0  # records moved from a version 1 store when it was opened
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = connect(path)
            self.migrated = ensure_schema(self._db, path)
            self._most_rows = rows_per_insert(self._db)
        except PermissionError as exc:
            raise PermissionDenied(f"cannot write SQLite sink {path}: permission denied") from exc
        except OSError as exc:
            raise ConfigError(f"cannot open SQLite sink {path}: {exc.strerror}") from exc
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open SQLite sink {path}: {exc}") from exc

    def describe(self) -> str:
        """Where the records go, for consume's start line."""
        return f"SQLite {self.path}"

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
        # IMMEDIATE: the write lock first, so that the highest seq read below is still the
        # highest when the rows go in, whatever another consume into this file does.
        db.execute("BEGIN IMMEDIATE")
        try:
            (last_seq,) = db.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()
            for sql, parameters in batch:
                db.execute(sql, parameters)
            stored = db.total_changes - before
            if stored:
                db.execute(_INDEX_NEW_ROWS, (last_seq,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return stored

    def prune(self, before_micros: int, most_chunks: int | None = None) -> int:
        """Delete the records older than a time, a chunk a transaction; return how many went.

        ``most_chunks`` bounds the work of one call (consume --retain prunes between
        batches). Freed pages go back to the file system (incremental vacuum).
        """
        return prune_sqlite(self._db, before_micros, most_chunks)

    def close(self) -> None:
        self._db.close()


def prune_sqlite(db: sqlite3.Connection, before_micros: int, most_chunks: int | None = None) -> int:
    """Delete records with a timestamp before ``before_micros`` in chunks; reclaim the space."""
    cutoff = format_micros(before_micros)
    deleted = chunks_done = 0
    while most_chunks is None or chunks_done < most_chunks:
        db.execute("BEGIN IMMEDIATE")
        try:
            gone = db.execute(
                "DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE timestamp < ? LIMIT ?)",
                (cutoff, PRUNE_CHUNK),
            ).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        deleted += gone
        chunks_done += 1
        if gone < PRUNE_CHUNK:
            break
    if deleted:
        db.executescript("PRAGMA incremental_vacuum")  # execute() would step it once: one page
    return deleted


def connect(path: Path) -> sqlite3.Connection:
    """Open a database for a sink: WAL, fsync at every commit, waiting for other consumes' writes.

    Used from consume's sink thread, one batch at a time; never two threads at once.
    """
    db = sqlite3.connect(path, timeout=LOCK_WAIT_S, isolation_level=None, check_same_thread=False)
    # Free pages go back to the file system only with auto_vacuum set before the first
    # table is made (and before WAL mode writes the file's header); a no-op on other files.
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
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


def ensure_schema(db: sqlite3.Connection, path: Path) -> int:
    """Create the schema in a new database, or migrate a version 1 store; return the records migrated."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return 0
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"SQLite sink {path} has schema version {version}, newer than this logctl's ({SCHEMA_VERSION}): "
            "upgrade logctl to read or write it"
        )
    db.execute("BEGIN IMMEDIATE")  # two consumes opening a new file at once: one creates, one waits
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        migrated, old = 0, False
        if version < SCHEMA_VERSION:
            old = _table_exists(db, "records")
            if old:
                db.execute("ALTER TABLE records RENAME TO records_v1")
            for statement in SCHEMA:
                db.execute(statement)
            if old:
                migrated = _migrate_v1(db)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if old:
        db.execute("VACUUM")  # the old table's pages back to the file system, and auto_vacuum (see connect) in force
    return migrated


def _migrate_v1(db: sqlite3.Connection) -> int:
    """Move the rows of a version 1 table into the new one, in time order, and index their messages."""
    columns = ", ".join(INSERT_COLUMNS)
    moved = db.execute(
        f"INSERT INTO records ({columns}) SELECT {columns} FROM records_v1 ORDER BY timestamp, id"
    ).rowcount
    db.execute("INSERT INTO records_fts (records_fts) VALUES ('rebuild')")
    db.execute("DROP TABLE records_v1")
    return int(moved)


def _table_exists(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


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
    columns = ", ".join(INSERT_COLUMNS)
    values = ",".join([f"({','.join('?' * COLUMNS)})"] * rows)
    return f"INSERT OR IGNORE INTO records ({columns}) VALUES {values}"
