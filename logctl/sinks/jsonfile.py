"""JSON Lines file sink: one object per record, appended and fsynced per batch.

Idempotent in bounded memory, however long consume runs: an index beside the file
(``PATH.ids``, SQLite) holds the ids of the records in the file and the file's length
after the last batch. A batch's lines are fsynced first, then its ids and the new
length are committed, then consume acks. On open, what lies past that length is cut
off: a crash left it between the write and the commit, it was never acknowledged, and
it will come again. An index that is missing, or that belongs to another file (a
rotated or truncated one), is rebuilt from the file, a torn last line cut off.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from logctl.errors import ConfigError, PermissionDenied
from logctl.records import WireRow, json_record
from logctl.render import json_lines
from logctl.sinks.sqlite import chunks, rows_per_insert

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
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            # consume stores from its sink thread, one batch at a time; never two threads at once.
            self._db = sqlite3.connect(index, isolation_level=None, check_same_thread=False)
            # FULL: a commit that a power cut could undo would cut acked lines off at the next open.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._most_ids = rows_per_insert(self._db, columns=1)
            self._length = self._reconcile()
        except PermissionError as exc:
            raise PermissionDenied(f"cannot write file sink {path}: permission denied") from exc
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the index of file sink {path} ({index}): {exc}") from exc

    def _reconcile(self) -> int:
        """Make the file and its index agree; return the file's length."""
        st = os.fstat(self._fd)
        known = self._db.execute("SELECT device, inode, length FROM file").fetchone()
        if known is None or known[:2] != (st.st_dev, st.st_ino) or known[2] > st.st_size:
            return self._rebuild(st)
        if st.st_size > known[2]:
            os.ftruncate(self._fd, known[2])  # a batch written but never committed, nor acked
        return int(known[2])

    def _rebuild(self, st: os.stat_result) -> int:
        """Index the ids of the file's whole lines, and cut off a torn last line."""
        db = self._db
        db.execute("BEGIN")
        db.execute("DELETE FROM ids")
        length = _index_lines(self.path, self._most_ids, self._insert)
        os.ftruncate(self._fd, length)
        db.execute("INSERT OR REPLACE INTO file VALUES (1, ?, ?, ?)", (st.st_dev, st.st_ino, length))
        db.execute("COMMIT")
        return length

    def prepare(self, rows: list[WireRow]) -> tuple[list[WireRow], bytearray]:
        """Return the records and their JSON lines (store drops those the file holds already)."""
        return rows, json_lines(json_record(*r) for r in rows)

    def store(self, batch: tuple[list[WireRow], bytearray]) -> int:
        rows, data = batch
        db = self._db
        db.execute("BEGIN")
        try:
            ids = [r[0] for r in rows]
            if self._insert(ids) < len(ids):  # some stored before, or repeated in this batch: the rare path
                db.execute("ROLLBACK")
                db.execute("BEGIN")
                rows = list(_first_of_each(rows, self._absent(ids)))
                self._insert([r[0] for r in rows])
                data = json_lines(json_record(*r) for r in rows)
            if rows:
                _write_all(self._fd, data)
                os.fsync(self._fd)
            length = self._length + len(data)
            db.execute("UPDATE file SET length = ?", (length,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            os.ftruncate(self._fd, self._length)  # so the next batch does not land after lines never committed
            raise
        self._length = length
        return len(rows)

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

    def _absent(self, ids: list[str]) -> set[str]:
        """The ids the index does not hold."""
        absent = set(ids)
        for start, size in chunks(len(ids), self._most_ids):
            absent.difference_update(i for (i,) in self._db.execute(_select_sql(size), ids[start : start + size]))
        return absent

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


def _first_of_each(rows: list[WireRow], wanted: set[str]) -> Iterator[WireRow]:
    """The rows whose ids are in ``wanted``, the first row of each id only."""
    for r in rows:
        if r[0] in wanted:
            wanted.discard(r[0])
            yield r


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
