"""Finding records in a SQLite sink: the filters as SQL on its indexes, words through FTS5."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from logctl.errors import ConfigError, NotFound, PermissionDenied
from logctl.query.model import Count, Found, Group, Grouping, Query, Term, bucket_counts, order_and_limit
from logctl.records import format_micros, micros_of
from logctl.sinks.sqlite import SCHEMA_VERSION, connect, ensure_schema, prune_sqlite

_SELECT = "SELECT seq, id, timestamp, level, service, message, trace_id, attrs FROM records"


class SqliteStore:
    """Read a SQLite sink's records (migrating a store of an earlier logctl on first open)."""

    # Rows get their seq under the write lock and commit in that order: what --follow has
    # seen up to a seq, it has seen all of.
    settle_s = 0.0

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise NotFound(f"no records stored at {path}: consume writes there (or name another with --sink)")
        self.path = path
        self.migrated = 0
        try:
            self._db, self.migrated = _open(path)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot read SQLite sink {path}: {exc}") from exc

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def search(self, query: Query, *, after_seq: int | None = None, upto_seq: int | None = None) -> Iterator[Found]:
        """The matching records, newest first (or oldest first, or in stored order after ``after_seq``)."""
        where, parameters = _conditions(query)
        if after_seq is not None:
            where.append("seq > ?")
            parameters.append(after_seq)
        if upto_seq is not None:
            where.append("seq <= ?")
            parameters.append(upto_seq)
        sql = _SELECT + _where(where)
        tail, more = order_and_limit(query, by_seq=after_seq is not None, placeholder="?")
        sql += tail
        parameters.extend(more)
        for seq, rid, stamp, level, service, message, trace_id, attrs in self._run(sql, parameters):
            row = (rid, _micros(stamp), level, service, message, trace_id, orjson.loads(attrs))
            yield Found(seq, row)

    def count(self, query: Query, grouping: Grouping) -> list[Count]:
        """How many records match, per level, per service or per time bucket (with its levels)."""
        where, parameters = _conditions(query)
        if grouping.group is Group.TIME:
            bucket = f"(CAST(strftime('%s', timestamp) AS INTEGER) / {grouping.bucket_s}) * {grouping.bucket_s}"
            sql = f"SELECT {bucket} AS bucket, level, count(*) FROM records{_where(where)} GROUP BY bucket, level"
            return bucket_counts(self._run(sql, parameters))
        column = grouping.group.value
        sql = f"SELECT {column}, count(*) AS n FROM records{_where(where)} GROUP BY {column} ORDER BY n DESC, {column}"
        return [Count(key, n) for key, n in self._run(sql, parameters)]

    def last_seq(self) -> int:
        """The seq of the newest stored record (0 when there is none)."""
        return int(self._db.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()[0])

    def prune(self, before_micros: int, most_chunks: int | None = None) -> int:
        try:
            return prune_sqlite(self._db, before_micros, most_chunks)
        except sqlite3.OperationalError as exc:
            if "readonly" in str(exc):
                raise PermissionDenied(f"cannot prune SQLite sink {self.path}: it is read-only for this user") from exc
            raise

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, parameters: list[Any]) -> list[Any]:
        try:
            return self._db.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            raise ConfigError(f"cannot search SQLite sink {self.path}: {exc}") from exc


def _open(path: Path) -> tuple[sqlite3.Connection, int]:
    """Open for reading and pruning; a store of an older schema is migrated (which needs write access once).

    A user who may only read the file reads it as it is, when its schema is current.
    """
    if not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        if db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return db, 0
        db.close()
    try:
        db = connect(path)
        migrated = ensure_schema(db, path)
    except sqlite3.OperationalError as exc:
        if "readonly" in str(exc) or "unable to open" in str(exc):
            raise PermissionDenied(
                f"SQLite sink {path} was written by an earlier logctl and must be migrated once "
                "by a user who may write it (run logctl query or consume as that user)"
            ) from exc
        raise
    return db, migrated


def _micros(stamp: str) -> int:
    return micros_of(datetime.fromisoformat(stamp))


def _where(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def fts_phrase(term: Term) -> str:
    """A term as an FTS5 string: quoted (so no character of it is an operator), ``*`` for a prefix."""
    quoted = '"' + term.text.replace('"', '""') + '"'
    return quoted + " *" if term.prefix else quoted


def _conditions(query: Query) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    parameters: list[Any] = []

    def among(column: str, values: tuple[str, ...]) -> None:
        where.append(f"{column} IN ({','.join('?' * len(values))})")
        parameters.extend(values)

    if query.levels:
        among("level", query.levels)
    if query.services:
        among("service", query.services)
    if query.since is not None:
        where.append("timestamp >= ?")
        parameters.append(format_micros(query.since))
    if query.until is not None:
        where.append("timestamp < ?")
        parameters.append(format_micros(query.until))
    if query.trace_id is not None:
        where.append("trace_id = ?")
        parameters.append(query.trace_id)
    for key, value in query.where:
        # The attribute's JSON text is the value as a string ("api") or as a literal (500, true).
        where.append("coalesce(attrs -> ?, attrs -> ?) IN (?, ?)")
        parameters.extend(_attr_parameters(key, value))
    for key, value in query.where_not:
        where.append("NOT coalesce(coalesce(attrs -> ?, attrs -> ?) IN (?, ?), 0)")  # absent counts as not equal
        parameters.extend(_attr_parameters(key, value))
    positive, negative = query.positive, query.negative
    if positive:
        expression = " AND ".join(fts_phrase(t) for t in positive)
        expression += "".join(f" NOT {fts_phrase(t)}" for t in negative)
        where.append("seq IN (SELECT rowid FROM records_fts WHERE records_fts MATCH ?)")
        parameters.append(expression)
    elif negative:
        where.append("seq NOT IN (SELECT rowid FROM records_fts WHERE records_fts MATCH ?)")
        parameters.append(" OR ".join(fts_phrase(t) for t in negative))
    return where, parameters


def _attr_parameters(key: str, value: str) -> tuple[str, str, str, str]:
    return _json_path([key]), _json_path(key.split(".")), orjson.dumps(value).decode(), value


def _json_path(keys: list[str]) -> str:
    """``$."a"."b"``: every key quoted, so that dots and spaces in a key are part of it."""
    return "$" + "".join(f'."{key}"' for key in keys)
