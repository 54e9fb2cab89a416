"""Finding records in a PostgreSQL sink: the same filters, words through its GIN full-text index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from logctl.errors import NotFound
from logctl.query.model import Count, Found, Group, Grouping, Query, Term, bucket_counts, order_and_limit
from logctl.records import format_micros, micros_of
from logctl.sinks.postgres import _translate, connect_postgres, ensure_table, fts_document, prune_postgres, table_of


class PostgresStore:
    """Read a PostgreSQL sink's table (bringing a table of an earlier logctl to the schema on first open)."""

    # Workers commit side by side, so a row may become visible after rows with a higher
    # seq: --follow reads again the rows stored in the last seconds, and shows each once.
    settle_s = 10.0

    def __init__(self, uri: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self.table = table_of(uri)
        self.migrated = 0
        self._db, self.where = connect_postgres(uri, psycopg)
        self._db.autocommit = True  # each query its own snapshot: --follow sees what was committed since
        try:
            exists = self._db.execute("SELECT to_regclass(%s) IS NOT NULL", (self.table,)).fetchone()[0]
            if not exists:
                raise NotFound(
                    f"PostgreSQL at {self.where} has no table {self.table}: "
                    "consume creates it (or name another with ?table=)"
                )
            ensure_table(self._db, self.table)
        except psycopg.Error as exc:
            raise _translate(exc, self.where) from exc

    def describe(self) -> str:
        return f"PostgreSQL {self.where} table {self.table}"

    def search(self, query: Query, *, after_seq: int | None = None, upto_seq: int | None = None) -> Iterator[Found]:
        where, parameters = self._conditions(query)
        if after_seq is not None:
            where.append("seq > %s")
            parameters.append(after_seq)
        if upto_seq is not None:
            where.append("seq <= %s")
            parameters.append(upto_seq)
        sql = f"SELECT seq, id, timestamp, level, service, message, trace_id, attrs FROM {self.table}{_where(where)}"
        tail, more = order_and_limit(query, by_seq=after_seq is not None, placeholder="%s")
        sql += tail
        parameters.extend(more)
        for seq, rid, stamp, level, service, message, trace_id, attrs in self._run(sql, parameters):
            yield Found(seq, (rid, micros_of(stamp), level, service, message, trace_id, attrs))

    def count(self, query: Query, grouping: Grouping) -> list[Count]:
        where, parameters = self._conditions(query)
        table = self.table
        if grouping.group is Group.TIME:
            size = grouping.bucket_s
            bucket = f"(floor(extract(epoch FROM timestamp) / {size}) * {size})::bigint"
            sql = f"SELECT {bucket} AS bucket, level, count(*) FROM {table}{_where(where)} GROUP BY bucket, level"
            return bucket_counts(self._run(sql, parameters))
        column = grouping.group.value
        sql = f"SELECT {column}, count(*) AS n FROM {table}{_where(where)} GROUP BY {column} ORDER BY n DESC, {column}"
        return [Count(key, int(n)) for key, n in self._run(sql, parameters)]

    def last_seq(self) -> int:
        return int(self._run(f"SELECT coalesce(max(seq), 0) FROM {self.table}", [])[0][0])

    def prune(self, before_micros: int, most_chunks: int | None = None) -> int:
        self._db.autocommit = False
        try:
            return prune_postgres(self._db, self.table, before_micros, most_chunks, self._psycopg, self.where)
        finally:
            self._db.autocommit = True

    def close(self) -> None:
        self._db.close()

    def _run(self, sql: str, parameters: list[Any]) -> list[Any]:
        try:
            return list(self._db.execute(sql, parameters).fetchall())
        except self._psycopg.Error as exc:
            raise _translate(exc, self.where) from exc

    def _conditions(self, query: Query) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        parameters: list[Any] = []
        if query.levels:
            where.append("level = ANY(%s)")
            parameters.append(list(query.levels))
        if query.services:
            where.append("service = ANY(%s)")
            parameters.append(list(query.services))
        if query.since is not None:
            where.append("timestamp >= %s::timestamptz")
            parameters.append(format_micros(query.since))
        if query.until is not None:
            where.append("timestamp < %s::timestamptz")
            parameters.append(format_micros(query.until))
        if query.trace_id is not None:
            where.append("trace_id = %s")
            parameters.append(query.trace_id)
        for key, value in query.where:
            where.append("coalesce(attrs ->> %s, attrs #>> %s) = %s")
            parameters.extend((key, key.split("."), value))
        for key, value in query.where_not:
            where.append("coalesce(attrs ->> %s, attrs #>> %s) IS DISTINCT FROM %s")
            parameters.extend((key, key.split("."), value))
        positive, negative = query.positive, query.negative
        document = fts_document(self.table)
        if positive:
            parts = [_tsquery(t) for t in positive] + [f"!!{_tsquery(t)}" for t in negative]
            where.append(f"{document} @@ ({' && '.join(parts)})")
            parameters.extend(_tsquery_text(t) for t in (*positive, *negative))
        elif negative:
            where.append(f"NOT {document} @@ ({' || '.join(_tsquery(t) for t in negative)})")
            parameters.extend(_tsquery_text(t) for t in negative)
        return where, parameters


def _tsquery(term: Term) -> str:
    """The tsquery of a term: a phrase (one word is a phrase of one), or a prefix."""
    return "to_tsquery('simple', %s)" if term.prefix else "phraseto_tsquery('simple', %s)"


def _tsquery_text(term: Term) -> str:
    return f"{term.text}:*" if term.prefix else term.text  # a prefix term is letters and digits only


def _where(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""
