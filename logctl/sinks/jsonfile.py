"""JSON Lines file sink: one object per record, appended and fsynced per batch.

Idempotent in bounded memory, however long consume runs: an index beside the file
(``PATH.ids``, SQLite) holds the ids of the records in the file and the file's length
after the last batch. A batch's lines are fsynced first, then its ids and the new
length are committed, then consume acks. What lies past that length is cut off before
the next write: a crash left it between the write and the commit, it was never
acknowledged, and it will come again.

Each batch is written in one write transaction of the index, which is also the lock
that lets several consumes share the file. Inside it the sink first catches up with
the path: a file rotated away is left behind and the new one at the path written to;
an index that is missing, or that belongs to another file (rotated away or truncated),
is rebuilt from the file at the path, a torn last line cut off.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson

from logctl.errors import ConfigError, PermissionDenied
from logctl.records import WireRow, json_record
from logctl.render import json_lines
from logctl.sinks import unseen
from logctl.sinks.sqlite import chunks, connect, rows_per_insert

INDEX_SUFFIX = ".ids"

SCHEMA = """
CREATE TABLE IF NOT EXISTS ids (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS file (
    one    INTEGER PRIMARY KEY CHECK (one = 1),
    device INTEGER NOT NULL,
    inode  INTEGER NOT NULL,
    length INTEGER NOT NULL
);
"""


class JsonFileSink:
    """Append records as JSON lines to one file, keeping their ids in an index beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        index = path.with_name(path.name + INDEX_SUFFIX)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = _open_append(path)
            # FULL sync (see connect): a commit a power cut could undo would cut acked lines off.
            self._db = connect(index)
            self._db.executescript(SCHEMA)
            self._most_ids = rows_per_insert(self._db, columns=1)
            self._db.execute("BEGIN IMMEDIATE")
            self._catch_up()
            self._db.execute("COMMIT")
        except PermissionError as exc:
            raise PermissionDenied(f"cannot write file sink {path}: permission denied") from exc
        except OSError as exc:
            raise ConfigError(f"cannot open file sink {path}: {exc.strerror}") from exc
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the index of file sink {path} ({index}): {exc}") from exc

    def describe(self) -> str:
        """Where the records go, for consume's start line."""
        return f"JSON Lines file {self.path}"

    def prepare(self, rows: list[WireRow]) -> tuple[list[WireRow], bytearray]:
        """Return the records and their JSON lines (store drops those the file holds already)."""
        return rows, json_lines(json_record(*r) for r in rows)

    def store(self, batch: tuple[list[WireRow], bytearray]) -> int:
        rows, data = batch
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # the index's write lock: one batch into this file at a time
        committed = None
        try:
            committed = self._catch_up()
            db.execute("SAVEPOINT batch")
            ids = [r[0] for r in rows]
            if self._insert(ids) < len(ids):  # some stored before, or repeated in this batch: the rare path
                db.execute("ROLLBACK TO batch")
                rows = unseen(rows, self._held(ids))
                self._insert([r[0] for r in rows])
                data = json_lines(json_record(*r) for r in rows)
            if rows:
                _write_all(self._fd, data)
                os.fsync(self._fd)
            db.execute("UPDATE file SET length = ?", (committed + len(data),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            if committed is not None:
                os.ftruncate(self._fd, committed)  # what this batch wrote is not in the index: cut it now
            raise
        return len(rows)

    def _catch_up(self) -> int:
        """In a write transaction: write to the file at the path, agreeing with the index; return its length."""
        st = os.fstat(self._fd)
        try:
            at_path = os.stat(self.path)
        except FileNotFoundError:
            at_path = None
        if at_path is None or (at_path.st_dev, at_path.st_ino) != (st.st_dev, st.st_ino):
            os.close(self._fd)  # rotated away or removed: the next lines go to the path
            self._fd = _open_append(self.path)
            st = os.fstat(self._fd)
        known = self._db.execute("SELECT device, inode, length FROM file").fetchone()
        if known is None or known[:2] != (st.st_dev, st.st_ino) or known[2] > st.st_size:
            return self._rebuild(st)
        if st.st_size > known[2]:
            os.ftruncate(self._fd, known[2])  # a batch written but never committed, nor acked
        return int(known[2])

    def _rebuild(self, st: os.stat_result) -> int:
        """In a write transaction: index the ids of the file's whole lines, cut off a torn last line."""
        self._db.execute("DELETE FROM ids")
        length = _index_lines(self.path, self._most_ids, self._insert)
        os.ftruncate(self._fd, length)
        self._db.execute("INSERT OR REPLACE INTO file VALUES (1, ?, ?, ?)", (st.st_dev, st.st_ino, length))
        return length

    def _insert(self, ids: list[str]) -> int:
        """Add ids to the index; return how many it did not hold.

        One statement per few thousand ids, which SQLite steps once: a statement that
        returned a row per id would give up the GIL at each, and wait to get it back
        while consume's main thread decodes (see MOST_ROWS_PER_INSERT in sinks/sqlite.py).
        """
        before = self._db.total_changes
        for start, size in chunks(len(ids), self._most_ids):
            self._db.execute(_insert_sql(size), ids[start : start + size])
        return self._db.total_changes - before

    def _held(self, ids: list[str]) -> set[str]:
        """The ids the index holds."""
        held: set[str] = set()
        for start, size in chunks(len(ids), self._most_ids):
            held.update(i for (i,) in self._db.execute(_select_sql(size), ids[start : start + size]))
        return held

    def close(self) -> None:
        os.close(self._fd)
        self._db.close()


def _index_lines(path: Path, most: int, add: Callable[[list[str]], object]) -> int:
    """Pass the ids of the file's whole lines to ``add``, ``most`` at a time; return their length."""
    ids: list[str] = []
    length = 0
    with path.open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break  # torn by a crash: never acknowledged
            length += len(line)
            try:
                ids.append(orjson.loads(line)["id"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if len(ids) == most:
                add(ids)
                ids = []
    add(ids)
    return length


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _write_all(fd: int, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@functools.cache
def _insert_sql(rows: int) -> str:
    return "INSERT OR IGNORE INTO ids VALUES " + ",".join(["(?)"] * rows)


@functools.cache
def _select_sql(rows: int) -> str:
    return "SELECT id FROM ids WHERE id IN (" + ",".join(["?"] * rows) + ")"
