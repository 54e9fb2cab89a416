"""PostgreSQL sink (``postgresql://user@host:port/db?table=NAME``): COPY in, new ids kept.

Each batch is one transaction: COPY into a temporary table (COPY has no ON CONFLICT,
and it is 5-50x the speed of INSERTs), then ``INSERT ... SELECT ... ON CONFLICT (id) DO
NOTHING`` into the table, so a redelivered record adds no row; consume acks only after
the commit. The table and its indexes are created on first use, and a table of an
earlier logctl (time column ``ts``, no ``seq``) is brought to this schema then.

The columns are the SQLite sink's (see the README's "Finding records"): ``seq`` orders
rows as they were stored (``query --follow`` reads on from it), and a GIN index over
``to_tsvector('simple', ...)`` of the message serves ``query``'s words and phrases.

Not partitioned by day: a partitioned table's primary key must include the partition
key, and the time of a record decoded from another tool's message that carries none is
the moment it was decoded, which differs between deliveries: keyed on (time, id), a
redelivery would be stored twice. ``logctl prune`` deletes in chunks instead.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from logctl.config import mask_url
from logctl.errors import AuthError, ConfigError, NotFound, SinkUnreachable
from logctl.records import WireRow, format_micros, json_bytes
from logctl.sinks import PRUNE_CHUNK

COLUMNS = ("id", "timestamp", "level", "service", "message", "trace_id", "attrs")
# The message text the full-text index reads: a tsvector holds at most 1 MiB, and a
# record may be 4 MiB. Words past this many characters are not found by query.
FTS_CHARS = 262_144
APPLICATION_NAME = "logctl consume"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def fts_document(table: str) -> str:
    """The expression the full-text index is built on; a query must repeat it to use the index."""
    return f"to_tsvector('simple'::regconfig, left({table}.message, {FTS_CHARS}))"


def _schema(table: str) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {table} (
            id        text PRIMARY KEY,
            seq       bigint GENERATED ALWAYS AS IDENTITY,
            timestamp timestamptz NOT NULL,
            level     text NOT NULL,
            service   text NOT NULL,
            message   text NOT NULL,
            trace_id  text,
            attrs     jsonb NOT NULL
        )""",
        *_migrations(table),
        f"DROP INDEX IF EXISTS {table}_ts",  # a BRIN index of version 1: it cannot give newest-first order
        f"CREATE INDEX IF NOT EXISTS {table}_timestamp ON {table} (timestamp)",
        f"CREATE INDEX IF NOT EXISTS {table}_seq ON {table} (seq)",
        # Indexes of version 1 that the one below replaces (as in the SQLite sink).
        f"DROP INDEX IF EXISTS {table}_service_ts",
        f"DROP INDEX IF EXISTS {table}_level_ts",
        f"CREATE INDEX IF NOT EXISTS {table}_service_level ON {table} (service, level, timestamp)",
        f"CREATE INDEX IF NOT EXISTS {table}_trace_id ON {table} (trace_id) WHERE trace_id IS NOT NULL",
        f"CREATE INDEX IF NOT EXISTS {table}_message_fts ON {table} USING gin ({fts_document(table)})",
    ]


def ensure_table(db: Any, table: str) -> None:
    """Create the table and its indexes, or bring a table of an earlier logctl to this schema."""
    with db.transaction():
        # Workers starting together: CREATE ... IF NOT EXISTS races in the catalogue.
        db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"logctl schema {table}",))
        for statement in _schema(table):
            db.execute(statement)


def table_of(uri: str) -> str:
    """The table a sink URI names (``?table=``, default ``logctl_records``), checked to be a plain name."""
    table = parse_qs(urlsplit(uri).query).get("table", ["logctl_records"])[0]
    if not _NAME.match(table):
        raise ConfigError(f"sink {mask_url(uri)}: table {table!r} is not a plain lower-case SQL name")
    return table


def connect_postgres(uri: str, psycopg: Any) -> tuple[Any, str]:
    """Connect for a sink URI (named ``logctl consume`` in pg_stat_activity); return (connection, where)."""
    parts = urlsplit(uri)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
    dsn = urlunsplit((parts.scheme.replace("postgres+", ""), parts.netloc, parts.path, "", ""))
    try:
        return psycopg.connect(dsn, connect_timeout=10, application_name=APPLICATION_NAME), where
    except psycopg.Error as exc:
        raise _translate(exc, where) from exc


def _migrations(table: str) -> list[str]:
    """Bring a table of logctl before ``query`` (column ``ts``, no ``seq``) to this schema; no-ops otherwise."""
    return [
        f"""DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = 'ts') THEN
                ALTER TABLE {table} RENAME COLUMN ts TO timestamp;
            END IF;
        END $$""",
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS seq bigint GENERATED ALWAYS AS IDENTITY",
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
        self.table = table = table_of(uri)
        # application_name: an operator sees (and can end) logctl's sessions in pg_stat_activity.
        self._db, self.where = connect_postgres(uri, psycopg)
        try:
            ensure_table(self._db, table)
            # Only the columns a batch writes (not seq, which the table's identity assigns).
            columns = ", ".join(COLUMNS)
            self._db.execute(
                f"CREATE TEMP TABLE incoming ON COMMIT DELETE ROWS AS SELECT {columns} FROM {table} WITH NO DATA"
            )
            self._db.commit()
        except psycopg.Error as exc:
            raise _translate(exc, self.where) from exc

    def describe(self) -> str:
        """Where the records go, for consume's start line."""
        return f"PostgreSQL {self.where} table {self.table}"

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

    def prune(self, before_micros: int, most_chunks: int | None = None) -> int:
        """Delete the records older than a time, a chunk a transaction; return how many went.

        Each chunk is its own short transaction on the time index, so consume's COPYs into
        the same table wait at most for one. The space is reused once autovacuum ran.
        """
        return prune_postgres(self._db, self.table, before_micros, most_chunks, self._psycopg, self.where)

    def close(self) -> None:
        self._db.close()


def prune_postgres(db: Any, table: str, before_micros: int, most_chunks: int | None, psycopg: Any, where: str) -> int:
    """Delete rows with a timestamp before ``before_micros`` from ``table``, PRUNE_CHUNK rows a transaction."""
    cutoff = format_micros(before_micros)
    deleted = chunks_done = 0
    try:
        while most_chunks is None or chunks_done < most_chunks:
            with db.transaction():
                cursor = db.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE timestamp < %s LIMIT %s)",
                    (cutoff, PRUNE_CHUNK),
                )
                gone = int(cursor.rowcount)
            deleted += gone
            chunks_done += 1
            if gone < PRUNE_CHUNK:
                break
    except psycopg.Error as exc:
        raise _translate(exc, where) from exc
    return deleted
