"""One conformance suite for every sink: same records in, same rows out, duplicates dropped."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from logctl.errors import ConfigError
from logctl.records import Level, LogRecord, format_timestamp, record_to_dict, wire_row
from logctl.sinks import Sink, open_sink, write
from logctl.sinks.sqlite import MOST_ROWS_PER_INSERT, chunks, rows_per_insert


def make(i: int) -> LogRecord:
    return LogRecord(
        f"src-{i:012x}",
        datetime(2026, 11, 27, 11, 32, 10, i, tzinfo=UTC),
        Level.WARN,
        "api",
        f"m{i}\x00é",
        None,
        {"n": i},
    )


def read_sqlite(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("select id, message from records").fetchall())


def read_jsonl(path: Path) -> list[tuple[str, str]]:
    return sorted((r["id"], r["message"]) for r in map(json.loads, path.read_text().splitlines()))


PG_URL = os.environ.get("LOGCTL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_table(path: Path) -> str:
    """A table of this test's own (from its tmp_path), in the test database."""
    return "t_" + hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()


def read_postgres(path: Path) -> list[tuple[str, str]]:
    """The table's (id, message) rows; a NUL the sink stored as U+FFFD reads as NUL again, to compare."""
    import psycopg

    with psycopg.connect(PG_URL) as conn:
        rows = conn.execute(f"select id, message from {pg_table(path)}").fetchall()
    return sorted((str(i), str(m).replace("\ufffd", "\x00")) for i, m in rows)


@pytest.fixture(autouse=True)
def _drop_pg_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Drop the tables a PostgreSQL case made (they are t_ and a hash of its tmp_path)."""
    if "postgresql" not in request.node.name:
        yield
        return
    import psycopg

    listing = "select tablename from pg_tables where tablename like 't\\_%'"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        before = {name for (name,) in conn.execute(listing).fetchall()}
    yield
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for (name,) in conn.execute(listing).fetchall():
            if name not in before:
                conn.execute(f"drop table {name}")


SINKS: dict[str, tuple[Callable[[Path], str], Callable[[Path], list[tuple[str, str]]]]] = {
    "sqlite": (lambda p: f"sqlite:///{p / 'x.db'}", lambda p: read_sqlite(p / "x.db")),
    "file": (lambda p: f"file://{p / 'x.jsonl'}", lambda p: read_jsonl(p / "x.jsonl")),
    "postgresql": (lambda p: f"{PG_URL}?table={pg_table(p)}", read_postgres),
}
# The conformance suite runs on every sink; PostgreSQL's needs the server (make test starts it).
CONFORMING = ["sqlite", "file", pytest.param("postgresql", marks=pytest.mark.integration)]


@pytest.mark.parametrize("kind", CONFORMING)
def test_sink_stores_each_record_once_across_reopen(kind: str, tmp_path: Path) -> None:
    uri, read = SINKS[kind][0](tmp_path), SINKS[kind][1]
    sink: Sink[Any] = open_sink(uri)
    assert write(sink, [wire_row(make(i)) for i in range(100)]) == 100
    assert write(sink, [wire_row(make(i)) for i in range(50, 150)]) == 50
    assert write(sink, [wire_row(make(i)) for i in (150, 151, 150, 151, 152)]) == 3  # repeated within a batch
    sink.close()
    reopened = open_sink(uri)
    assert write(reopened, [wire_row(make(i)) for i in range(140, 160)]) == 7
    reopened.close()
    assert read(tmp_path) == sorted((make(i).id, make(i).message) for i in range(160))


@pytest.mark.parametrize("kind", CONFORMING)
def test_sink_stores_batches_of_any_size_prepared_ahead_of_the_store_before(kind: str, tmp_path: Path) -> None:
    """As consume runs them: the next batch is prepared while the one before is stored.

    The sizes cross SQLite's rows per INSERT (4,096) on either side; the last batch
    repeats records of the one prepared just before it, while that one is not stored yet.
    """
    uri, read = SINKS[kind][0](tmp_path), SINKS[kind][1]
    sink: Sink[Any] = open_sink(uri)
    sizes = [1, 4095, 4096, 4097, 8192 + 37, 0, 3]
    starts = [sum(sizes[:k]) for k in range(len(sizes))]
    batches = [[wire_row(make(start + i)) for i in range(size)] for start, size in zip(starts, sizes, strict=True)]
    # 2 records prepared but not stored yet, 3 stored, 1 new
    batches.append([*batches[-1][-2:], *batches[4][-3:], wire_row(make(sum(sizes)))])
    stored, prepared = [], sink.prepare(batches[0])
    for batch in batches[1:]:
        upcoming = sink.prepare(batch)
        stored.append(sink.store(prepared))
        prepared = upcoming
    stored.append(sink.store(prepared))
    sink.close()
    assert stored == [*sizes, 1]
    assert read(tmp_path) == sorted((make(i).id, make(i).message) for i in range(sum(sizes) + 1))


def test_rows_per_insert_keeps_within_an_older_sqlites_parameter_limit() -> None:
    db = sqlite3.connect(":memory:")
    assert rows_per_insert(db) == MOST_ROWS_PER_INSERT
    db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # SQLite before 3.32
    assert rows_per_insert(db) == 128  # 999 // 7 = 142, down to a power of two
    db.close()


@given(st.integers(0, 20_000), st.sampled_from([1, 2, 128, 4096]))
def test_chunks_cover_a_batch_in_order_with_few_sizes(count: int, most: int) -> None:
    pieces = list(chunks(count, most))
    starts, sizes = [start for start, _ in pieces], [size for _, size in pieces]
    assert starts == list(accumulate(sizes, initial=0))[:-1]  # each starts where the one before ended
    assert sum(sizes) == count
    assert all(size <= most and size & (size - 1) == 0 for size in set(sizes))  # powers of two
    assert len(pieces) <= count // most + most.bit_length()


def test_sinks_store_what_the_record_shows(tmp_path: Path) -> None:
    """The stored fields are those of record_to_dict (what --dry-run and tail print)."""
    records = [make(i) for i in (0, 1, 999_999)]
    file_sink, db_sink = open_sink(f"file://{tmp_path / 'x.jsonl'}"), open_sink(f"sqlite:///{tmp_path / 'x.db'}")
    for sink in (file_sink, db_sink):
        write(sink, [wire_row(r) for r in records])
        sink.close()
    lines = [json.loads(line) for line in (tmp_path / "x.jsonl").read_text().splitlines()]
    assert lines == [record_to_dict(r) for r in records]
    with sqlite3.connect(tmp_path / "x.db") as conn:
        stored = conn.execute("select id, timestamp, level, attrs from records order by id").fetchall()
    assert stored == [
        (r.id, format_timestamp(r.timestamp), r.level.value, json.dumps(r.attrs, separators=(",", ":")))
        for r in records
    ]


def test_file_sink_cuts_a_torn_last_line_left_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    sink = open_sink(f"file://{path}")
    write(sink, [wire_row(make(1))])
    sink.close()
    with path.open("ab") as fh:
        fh.write(b'{"id": "src-0000000')
    sink = open_sink(f"file://{path}")
    assert write(sink, [wire_row(make(2))]) == 1
    sink.close()
    assert [r[0] for r in read_jsonl(path)] == [make(1).id, make(2).id]


def test_file_sink_cuts_lines_whose_batch_a_crash_left_uncommitted(tmp_path: Path) -> None:
    """Lines written and fsynced, then a crash before the index committed them: never acked."""
    path = tmp_path / "x.jsonl"
    sink = open_sink(f"file://{path}")
    write(sink, [wire_row(make(1))])
    sink.close()
    with path.open("ab") as fh:  # what store had written when the crash came
        fh.write(orjson.dumps(record_to_dict(make(2))) + b"\n")
    sink = open_sink(f"file://{path}")
    assert write(sink, [wire_row(make(2)), wire_row(make(1))]) == 1  # the redelivered batch
    sink.close()
    assert read_jsonl(path) == [(make(1).id, make(1).message), (make(2).id, make(2).message)]


def test_file_sink_rebuilds_a_lost_index_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    sink = open_sink(f"file://{path}")
    write(sink, [wire_row(make(i)) for i in range(10)])
    sink.close()
    for index in tmp_path.glob("x.jsonl.ids*"):
        index.unlink()
    sink = open_sink(f"file://{path}")
    assert write(sink, [wire_row(make(i)) for i in range(5, 15)]) == 5
    sink.close()
    assert read_jsonl(path) == sorted((make(i).id, make(i).message) for i in range(15))


def test_file_sink_indexes_a_new_file_at_the_path_afresh(tmp_path: Path) -> None:
    """Rotated away (or truncated), the old file keeps its records: the new one starts empty."""
    path = tmp_path / "x.jsonl"
    sink = open_sink(f"file://{path}")
    write(sink, [wire_row(make(i)) for i in range(3)])
    sink.close()
    path.rename(tmp_path / "x.jsonl.1")
    sink = open_sink(f"file://{path}")
    assert write(sink, [wire_row(make(i)) for i in range(2, 4)]) == 2
    sink.close()
    assert [r[0] for r in read_jsonl(path)] == [make(2).id, make(3).id]
    path.write_bytes(b"")  # truncated in place
    sink = open_sink(f"file://{path}")
    assert write(sink, [wire_row(make(3))]) == 1
    sink.close()
    assert [r[0] for r in read_jsonl(path)] == [make(3).id]


def test_two_consumers_writing_one_file_sink_lose_and_double_nothing(tmp_path: Path) -> None:
    """Workers scaled out onto one file: each batch starts from what the other committed."""
    uri = f"file://{tmp_path / 'x.jsonl'}"
    first, second = open_sink(uri), open_sink(uri)
    assert write(first, [wire_row(make(i)) for i in range(0, 10)]) == 10
    assert write(second, [wire_row(make(i)) for i in range(5, 20)]) == 10
    assert write(first, [wire_row(make(i)) for i in range(15, 30)]) == 10
    first.close()
    second.close()
    reopened = open_sink(uri)
    assert write(reopened, [wire_row(make(i)) for i in range(30)]) == 0
    reopened.close()
    assert read_jsonl(tmp_path / "x.jsonl") == sorted((make(i).id, make(i).message) for i in range(30))


def open_at_once(uri: str, count: int = 3) -> None:
    """Open and close a sink in ``count`` threads released at the same moment."""
    barrier = threading.Barrier(count)

    def open_and_close() -> None:
        barrier.wait()
        open_sink(uri).close()

    with ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(open_and_close) for _ in range(count)]:
            future.result()


@pytest.mark.parametrize("kind", SINKS)
def test_consumers_that_open_a_new_sink_at_the_same_moment_all_open_it(kind: str, tmp_path: Path) -> None:
    """Workers started together: making a new database WAL while another does was 'database is locked'."""
    for trial in range(100):
        (tmp_path / str(trial)).mkdir()
        open_at_once(SINKS[kind][0](tmp_path / str(trial)))


def test_file_sink_follows_its_path_when_the_file_is_rotated_under_it(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    sink = open_sink(f"file://{path}")
    write(sink, [wire_row(make(1))])
    path.rename(tmp_path / "x.jsonl.1")  # logrotate, create mode
    assert write(sink, [wire_row(make(2))]) == 1
    path.rename(tmp_path / "x.jsonl.2")
    path.write_bytes(b"")  # and a new empty file made by the rotation
    assert write(sink, [wire_row(make(3))]) == 1
    sink.close()
    assert [r[0] for r in read_jsonl(tmp_path / "x.jsonl.1")] == [make(1).id]
    assert [r[0] for r in read_jsonl(tmp_path / "x.jsonl.2")] == [make(2).id]
    assert [r[0] for r in read_jsonl(path)] == [make(3).id]


def test_stdout_sink_drops_duplicates_within_a_run(capsys: pytest.CaptureFixture[str]) -> None:
    sink = open_sink("stdout")
    assert write(sink, [wire_row(make(1)), wire_row(make(2))]) == 2
    assert write(sink, [wire_row(make(2))]) == 0


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown sink"):
        open_sink("mongodb://host/db")
