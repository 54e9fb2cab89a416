"""PostgreSQL sink (``postgresql://user@host:port/db?table=NAME``): COPY in, new ids kept.

Each batch is one transaction: COPY into a temporary table (COPY has no ON CONFLICT,
and it is 5-50x the speed of INSERTs), then ``INSERT ... SELECT ... ON CONFLICT (id) DO
NOTHING`` into the table, so a redelivered record adds no row; consume acks only after
the commit. The table and its indexes (time, level, service, trace id) are created on
first use.

Not partitioned by day: a partitioned table's primary key must include the partition
key, and the time of a record decoded from another tool's message that carries none is
the moment it was decoded, which differs between deliveries: keyed on (time, id), a
redelivery would be stored twice. The time index is a BRIN index, small and cheap for
rows that arrive roughly in time order; partitioning by hand (pg_partman) stays open
to whoever keeps ids unique across partitions another way.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from logctl.config import mask_url
from logctl.errors import AuthError, ConfigError, NotFound, SinkUnreachable
from logctl.records import WireRow, format_micros, json_bytes

COLUMNS = ("id", "ts", "level", "service", "message", "trace_id", "attrs")
APPLICATION_NAME = "logctl consume"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _schema(table: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
            id       text PRIMARY KEY,
            ts       timestamptz NOT NULL,
            level    text NOT NULL,
            service  text NOT NULL,
            message  text NOT NULL,
            trace_id text,
            attrs    jsonb NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS {table}_ts ON {table} USING brin (ts)",
        f"CREATE INDEX IF NOT EXISTS {table}_service_ts ON {table} (service, ts)",
        f"CREATE INDEX IF NOT EXISTS {table}_level_ts ON {table} (level, ts)",
        f"CREATE INDEX IF NOT EXISTS {table}_trace_id ON {table} (trace_id) WHERE trace_id IS NOT NULL",
    ]


def _translate(exc: Exception, where: str) -> Exception:
    """A psycopg error as the operator should see it."""
    text = " ".join(str(exc).split())
    if "password authentication failed" in text or "no password supplied" in text:
        return AuthError(f"PostgreSQL at {where} refused the login: {text}")
    if "does not exist" in text and "database" in text:
        return NotFound(f"PostgreSQL at {where}: {text} (create it, or name another in the sink URL)")
    return SinkUnreachable(f"PostgreSQL at {where}: {text}; the batch is not acked and comes again")


def _without_nul(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        value.replace("\x00", NUL_STAND_IN).replace("\\u0000", "\\ufffd") if isinstance(value, str) else value
        for value in row
    )


NUL_STAND_IN = "\ufffd"


class PostgresSink:
    """Store records in a PostgreSQL table (default ``logctl_records``)."""

    def __init__(self, uri: str) -> None:
        import psycopg  # loaded only for this sink

        self._psycopg = psycopg
        parts = urlsplit(uri)
        table = parse_qs(parts.query).get("table", ["logctl_records"])[0]
        if not _NAME.match(table):
            raise ConfigError(f"sink {mask_url(uri)}: table {table!r} is not a plain lower-case SQL name")
        self.table = table
        self.where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
        self._dsn = urlunsplit((parts.scheme.replace("postgres+", ""), parts.netloc, parts.path, "", ""))
        try:
            # application_name: an operator sees (and can end) logctl's sessions in pg_stat_activity.
            self._db = psycopg.connect(self._dsn, connect_timeout=10, application_name=APPLICATION_NAME)
            with self._db.transaction():
                # Workers starting together: CREATE ... IF NOT EXISTS races in the catalogue.
                self._db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"logctl schema {table}",))
                for statement in _schema(table):
                    self._db.execute(statement)
            self._db.execute(f"CREATE TEMP TABLE incoming (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
            self._db.commit()
        except psycopg.Error as exc:
            raise _translate(exc, self.where) from exc

    def prepare(self, rows: list[WireRow]) -> list[tuple[Any, ...]]:
        """Rows as COPY writes them (times as ISO text, attrs as JSON text).

        PostgreSQL's text and jsonb hold no NUL character: a NUL becomes U+FFFD (ship
        has flagged such a line ``logctl.nul_bytes`` already).
        """
        prepared = [
            (rid, format_micros(micros), str(level), service, message, trace_id, json_bytes(attrs).decode())
            for rid, micros, level, service, message, trace_id, attrs in rows
        ]
        if any("\x00" in row[4] or "\\u0000" in row[6] for row in prepared):
            prepared = [_without_nul(row) for row in prepared]
        return prepared

    def store(self, batch: list[tuple[Any, ...]]) -> int:
        if not batch:
            return 0
        columns = ", ".join(COLUMNS)
        try:
            with self._db.transaction(), self._db.cursor() as cursor:
                with cursor.copy(f"COPY incoming ({columns}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
                cursor.execute(
                    f"INSERT INTO {self.table} ({columns}) SELECT {columns} FROM incoming ON CONFLICT (id) DO NOTHING"
                )
                return int(cursor.rowcount)
        except self._psycopg.Error as exc:
            raise _translate(exc, self.where) from exc

    def close(self) -> None:
        self._db.close()
