"""``logctl query`` and ``prune`` against real SQLite files and the local PostgreSQL, held to one ground truth.

Records are generated from a small vocabulary, stored through the sinks as consume
stores them, and every filter is checked against the same filter computed in Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from logctl.cli import app
from logctl.errors import ConfigError
from logctl.query import Query, matches_then_follow, open_store
from logctl.query.model import Group, Grouping, levels_at_least, parse_grouping, parse_terms, parse_when
from logctl.records import Level, format_micros, micros_of
from logctl.sinks import open_sink, write

PG_URL = os.environ.get("LOGCTL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
WORDS = [
    "timeout",
    "connection",
    "reset",
    "payment",
    "order",
    "Billing",
    "cache",
    "miss",
    "retry",
    "upstream",
    "slow",
    "query",
    "served",
]
SERVICES = ("api", "billing", "web", "worker")
BASE = micros_of(datetime(2026, 11, 28, tzinfo=UTC))
HOUR = 3_600_000_000


def generate(count: int, seed: int = 7, first: int = 0) -> list[list[Any]]:
    """Records over three days: every level, four services, nested attrs, some trace ids."""
    rng = random.Random(seed)
    rows = []
    for i in range(first, first + count):
        words = rng.choices(WORDS, k=rng.randint(3, 9))
        if i % 11 == 0:
            words.insert(rng.randint(0, len(words)), "disk full")
        attrs: dict[str, Any] = {"http": {"status": rng.choice([200, 404, 500])}, "region": rng.choice(["eu", "us"])}
        if i % 5 == 0:
            attrs["log.file.path"] = f"/var/log/{rng.choice(SERVICES)}.log"
        if i % 17 == 0:
            attrs["logctl.read_time"] = True
        rows.append(
            [
                f"gen-{i:012x}",
                BASE + rng.randrange(72 * HOUR),
                rng.choice(list(Level)).value,
                rng.choice(SERVICES),
                " ".join(words),
                f"{i:032x}" if i % 13 == 0 else None,
                attrs,
            ]
        )
    return rows


# --- the ground truth, in Python --------------------------------------------------------------


def tokens(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def holds(message: str, phrase: str, prefix: bool) -> bool:
    have, want = tokens(message), tokens(phrase)
    if prefix:
        return any(t.startswith(want[0]) for t in have)
    return any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1))


def attr(attrs: dict[str, Any], key: str) -> Any:
    if key in attrs:
        return attrs[key]
    value: Any = attrs
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def as_text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def truth(rows: list[list[Any]], query: Query) -> list[list[Any]]:
    """The matches of ``query``, ordered as query orders them (time, then stored order)."""
    stored = {str(r[0]): n for n, r in enumerate(rows)}
    found = [
        r
        for r in rows
        if (not query.levels or r[2] in query.levels)
        and (not query.services or r[3] in query.services)
        and (query.since is None or r[1] // 1000 * 1000 >= query.since)
        and (query.until is None or r[1] // 1000 * 1000 < query.until)
        and (query.trace_id is None or r[5] == query.trace_id)
        and all(as_text(attr(r[6], k)) == v for k, v in query.where)
        and all(as_text(attr(r[6], k)) != v for k, v in query.where_not)
        and all(holds(r[4], t.text, t.prefix) != t.negated for t in query.terms)
    ]
    found.sort(key=lambda r: (r[1] // 1000, stored[r[0]]), reverse=not query.oldest_first)
    return found[: query.limit] if query.limit is not None else found


QUERIES: list[tuple[str, Callable[[], Query]]] = [
    ("everything", lambda: Query()),
    ("level at least ERROR", lambda: Query(levels=levels_at_least(Level.ERROR))),
    ("two services", lambda: Query(services=("api", "web"))),
    ("since and until", lambda: Query(since=BASE + 10 * HOUR, until=BASE + 20 * HOUR)),
    ("one word", lambda: Query(terms=parse_terms(["timeout"]))),
    ("a word in another case", lambda: Query(terms=parse_terms(["BILLING"]))),
    ("all words must match", lambda: Query(terms=parse_terms(["timeout", "reset"]))),
    ("a phrase", lambda: Query(terms=parse_terms(["connection reset"]))),
    ("a quoted phrase and a word", lambda: Query(terms=parse_terms(['"disk full" retry']))),
    ("an excluded word", lambda: Query(terms=parse_terms(["timeout", "-retry"]))),
    ("only excluded words", lambda: Query(terms=parse_terms(["-timeout", "-cache"]))),
    ("a prefix", lambda: Query(terms=parse_terms(["up*"]))),
    ("a trace id", lambda: Query(trace_id=f"{13 * 9:032x}")),
    ("a nested attribute", lambda: Query(where=(("http.status", "500"),))),
    ("a key with dots", lambda: Query(where=(("log.file.path", "/var/log/api.log"),))),
    ("two attributes", lambda: Query(where=(("http.status", "404"), ("region", "eu")))),
    ("an attribute not equal (or absent)", lambda: Query(where_not=(("log.file.path", "/var/log/api.log"),))),
    ("a time read, not written", lambda: Query(where=(("logctl.read_time", "true"),))),
    (
        "the issue's question",
        lambda: Query(
            levels=levels_at_least(Level.ERROR),
            services=("billing",),
            since=BASE + 48 * HOUR,
            terms=parse_terms(["timeout"]),
        ),
    ),
    ("oldest first, limited", lambda: Query(levels=("WARN",), oldest_first=True, limit=7)),
    ("newest first, limited", lambda: Query(terms=parse_terms(["payment"]), limit=5)),
]


# --- the sinks under test -----------------------------------------------------------------


def pg_uri(tmp_path: Path) -> str:
    table = "q_" + hashlib.blake2b(str(tmp_path).encode(), digest_size=6).hexdigest()
    return f"{PG_URL}?table={table}"


def drop_pg(uri: str) -> None:
    import psycopg

    table = uri.rsplit("table=", 1)[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(params=["sqlite", "postgresql"])
def sink_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'logs.db'}"
        return
    uri = pg_uri(tmp_path)
    yield uri
    drop_pg(uri)


def fill(uri: str, rows: list[list[Any]], batch: int = 500) -> None:
    sink = open_sink(uri)
    try:
        for start in range(0, len(rows), batch):
            write(sink, rows[start : start + batch])
    finally:
        sink.close()


@pytest.fixture
def stored(sink_uri: str) -> tuple[str, list[list[Any]]]:
    rows = generate(1500)
    fill(sink_uri, rows)
    return sink_uri, rows


@pytest.mark.parametrize("name,make", QUERIES, ids=[name for name, _ in QUERIES])
def test_every_filter_finds_exactly_the_ground_truth(
    stored: tuple[str, list[list[Any]]], name: str, make: Callable[[], Query]
) -> None:
    uri, rows = stored
    query = make()
    expected = [r[0] for r in truth(rows, query)]
    assert expected or name == "a trace id", f"the ground truth of {name!r} is empty: the test would prove little"
    store = open_store(uri)
    try:
        got = [f.row[0] for f in store.search(query)]
    finally:
        store.close()
    assert got == expected


def test_found_records_are_the_records_stored(stored: tuple[str, list[list[Any]]]) -> None:
    uri, rows = stored
    store = open_store(uri)
    try:
        found = {f.row[0]: list(f.row) for f in store.search(Query(trace_id=f"{13 * 3:032x}"))}
    finally:
        store.close()
    want = next(r for r in rows if r[5] == f"{13 * 3:032x}")
    assert found == {want[0]: [*want[:1], want[1] // 1000 * 1000, *want[2:]]}


@pytest.mark.parametrize("grouping", ["level", "service", "1h", "6h"])
def test_count_by_matches_the_ground_truth(stored: tuple[str, list[list[Any]]], grouping: str) -> None:
    uri, rows = stored
    query = Query(terms=parse_terms(["timeout"]), since=BASE + HOUR)
    group = parse_grouping(grouping)
    matching = truth(rows, query)
    store = open_store(uri)
    try:
        from logctl.query import counts

        got = counts(store, query, group)
    finally:
        store.close()
    if group.group is Group.TIME:
        step = group.bucket_s * 1_000_000
        want = Counter((r[1] // step) * step for r in matching)
        first = (BASE + HOUR) // step * step
        assert int(got[0].key) == first  # from --since on, empty buckets included
        assert {int(c.key): c.count for c in got if c.count} == dict(want)
        by_level = Counter(((r[1] // step) * step, r[2]) for r in matching)
        assert {(int(c.key), lvl): n for c in got for lvl, n in c.levels.items()} == dict(by_level)
    else:
        column = 2 if group.group is Group.LEVEL else 3
        assert {c.key: c.count for c in got} == dict(Counter(r[column] for r in matching))
        assert [c.count for c in got] == sorted((c.count for c in got), reverse=True)


def test_redelivered_records_are_stored_and_found_once(sink_uri: str) -> None:
    rows = generate(300)
    fill(sink_uri, rows)
    fill(sink_uri, rows[100:200])  # a redelivery
    store = open_store(sink_uri)
    try:
        assert len(list(store.search(Query()))) == 300
        assert len(list(store.search(Query(terms=parse_terms(["timeout"]))))) == len(
            truth(rows, Query(terms=parse_terms(["timeout"])))
        )
    finally:
        store.close()


# --- prune ------------------------------------------------------------------------------


def test_prune_deletes_what_is_older_and_the_words_index_follows(stored: tuple[str, list[list[Any]]]) -> None:
    uri, rows = stored
    cutoff = BASE + 36 * HOUR
    store = open_store(uri)
    try:
        gone = store.prune(cutoff)
        left = [f.row[0] for f in store.search(Query())]
        words = [f.row[0] for f in store.search(Query(terms=parse_terms(["timeout"])))]
    finally:
        store.close()
    kept = [r for r in rows if r[1] // 1000 * 1000 >= cutoff]
    assert gone == len(rows) - len(kept) > 0
    assert sorted(left) == sorted(r[0] for r in kept)
    assert sorted(words) == sorted(r[0] for r in truth(kept, Query(terms=parse_terms(["timeout"]))))
    if uri.startswith("sqlite"):
        with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
            db.execute("INSERT INTO records_fts (records_fts) VALUES ('integrity-check')")  # raises if out of step


def test_prune_gives_sqlite_space_back(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'logs.db'}"
    fill(uri, generate(20_000))
    path = tmp_path / "logs.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = path.stat().st_size
    store = open_store(uri)
    try:
        assert store.prune(BASE + 70 * HOUR) > 15_000
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert path.stat().st_size < before / 3


def test_prune_beside_a_writer_loses_none_of_the_new_records(sink_uri: str) -> None:
    """consume keeps storing while prune deletes old records in chunks: every new record stays, once."""
    old = generate(12_000)  # all in the three days of BASE
    fill(sink_uri, old, batch=2000)
    new = [[f"new-{i:012x}", BASE + 100 * HOUR + i, *row[2:]] for i, row in enumerate(generate(6000, seed=9))]
    store = open_store(sink_uri)
    try:
        with ThreadPoolExecutor(1) as pool:
            writing = pool.submit(fill, sink_uri, new, 300)
            gone = store.prune(BASE + 99 * HOUR)
            writing.result()  # the writer's errors, if any, raise here
        left = Counter(f.row[0] for f in store.search(Query()))
    finally:
        store.close()
    assert gone == len(old)
    assert left == Counter(r[0] for r in new)


# --- follow -------------------------------------------------------------------------------


def test_follow_shows_each_new_match_once_while_two_writers_store(sink_uri: str) -> None:
    """After the newest matches, every record stored later that matches is shown, exactly once."""
    early = generate(400)
    fill(sink_uri, early)
    query = Query(levels=levels_at_least(Level.WARN), terms=parse_terms(["timeout"]), limit=5)
    later = [generate(900, seed=s, first=10_000 * s) for s in (1, 2)]
    store = open_store(sink_uri)
    store.settle_s = 1.0  # PostgreSQL: rows of other transactions may appear out of seq order for this long
    stop = threading.Event()
    shown: list[list[Any]] = []
    batches = matches_then_follow(store, query, stop.is_set, poll_s=0.05)
    first = next(batches)

    def follow() -> None:
        for batch in batches:
            shown.extend(list(f.row) for f in batch)

    follower = threading.Thread(target=follow)
    follower.start()
    writers = [threading.Thread(target=fill, args=(sink_uri, rows, 37)) for rows in later]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    want = Counter(r[0] for rows in later for r in truth(rows, replace(query, limit=None)))
    deadline = time.monotonic() + 20
    while Counter(r[0] for r in shown) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(store.settle_s + 0.3)  # and nothing more comes
    stop.set()
    follower.join()
    store.close()
    assert [f.row[0] for f in first] == [r[0] for r in reversed(truth(early, query))]
    assert Counter(r[0] for r in shown) == want
    assert sum(want.values()) > 20


# --- migration from the schema of earlier versions ------------------------------------------------

V1_SQLITE = """CREATE TABLE records (
    id TEXT PRIMARY KEY, timestamp TEXT NOT NULL, level TEXT NOT NULL, service TEXT NOT NULL,
    message TEXT NOT NULL, trace_id TEXT, attrs TEXT NOT NULL) WITHOUT ROWID"""


def test_a_sqlite_store_of_version_1_is_migrated_on_first_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    rows = generate(800)
    with sqlite3.connect(path) as db:
        db.execute(V1_SQLITE)
        db.executemany(
            "INSERT INTO records VALUES (?,?,?,?,?,?,?)",
            [(r[0], format_micros(r[1]), r[2], r[3], r[4], r[5], json.dumps(r[6])) for r in rows],
        )
    store = open_store(f"sqlite:///{path}")
    try:
        assert store.migrated == 800
        query = Query(terms=parse_terms(["connection reset"]), levels=levels_at_least(Level.WARN))
        assert [f.row[0] for f in store.search(query)] == [r[0] for r in truth(rows, query)]
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # prune can give space back
        names = {n for (n,) in db.execute("SELECT name FROM sqlite_master")}
        assert {"records", "records_fts", "records_timestamp", "records_service_level", "records_trace_id"} <= names
        assert "records_v1" not in names
    sink = open_sink(f"sqlite:///{path}")  # consume opens it afterwards: nothing more to do, rows kept
    try:
        assert getattr(sink, "migrated", None) == 0
        assert write(sink, generate(900)[800:]) == 100
    finally:
        sink.close()


def test_a_postgresql_table_of_version_1_is_migrated_on_first_open(tmp_path: Path) -> None:
    import psycopg

    uri = pg_uri(tmp_path)
    table = uri.rsplit("table=", 1)[1]
    rows = generate(600)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(
            f"""CREATE TABLE {table} (id text PRIMARY KEY, ts timestamptz NOT NULL, level text NOT NULL,
            service text NOT NULL, message text NOT NULL, trace_id text, attrs jsonb NOT NULL)"""
        )
        conn.execute(f"CREATE INDEX {table}_ts ON {table} USING brin (ts)")
        with conn.cursor() as cursor, cursor.copy(f"COPY {table} FROM STDIN") as copy:
            for r in rows:
                copy.write_row((r[0], format_micros(r[1]), r[2], r[3], r[4], r[5], json.dumps(r[6])))
    try:
        store = open_store(uri)
        try:
            query = Query(terms=parse_terms(["timeout"]), since=BASE + 24 * HOUR)
            assert [f.row[0] for f in store.search(query)] == [r[0] for r in truth(rows, query)]
        finally:
            store.close()
        with psycopg.connect(PG_URL) as conn:
            columns = [
                c
                for (c,) in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                    (table,),
                )
            ]
            assert columns[:8] == ["id", "timestamp", "level", "service", "message", "trace_id", "attrs", "seq"]
            assert conn.execute(f"SELECT count(DISTINCT seq) FROM {table}").fetchone()[0] == 600
        fill(uri, generate(700))  # consume writes into it as before
        store = open_store(uri)
        try:
            assert len(list(store.search(Query()))) == 700
        finally:
            store.close()
    finally:
        drop_pg(uri)


# --- parsing the command line's words and times -------------------------------------------------


def test_terms_are_words_phrases_exclusions_and_prefixes() -> None:
    assert [str(t) for t in parse_terms(["timeout", "disk full", '"a b" -c', '-"x y"', "pay*"])] == [
        "timeout",
        '"disk full"',
        '"a b"',
        "-c",
        '-"x y"',
        "pay*",
    ]
    with pytest.raises(ConfigError, match="no letter or digit"):
        parse_terms(["--"])
    with pytest.raises(ConfigError, match="prefix"):
        parse_terms(["a.b*"])


def test_times_are_iso_or_a_duration_ago() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert parse_when("1h", "--since", now) == micros_of(datetime(2026, 12, 3, 11, 0, tzinfo=UTC))
    assert parse_when("2026-12-01", "--since", now) == micros_of(datetime(2026, 12, 1, tzinfo=UTC))
    assert parse_when("2026-12-01T10:00:00+02:00", "--since", now) == micros_of(datetime(2026, 12, 1, 8, tzinfo=UTC))
    with pytest.raises(ConfigError, match="ISO 8601"):
        parse_when("yesterday", "--since", now)
    assert parse_grouping("5m") == Grouping(Group.TIME, 300)
    with pytest.raises(ConfigError, match="--count-by"):
        parse_grouping("weekly")


# --- the command ---------------------------------------------------------------------------

runner = CliRunner()


def cli(*args: str, **env: str) -> Any:
    return runner.invoke(app, list(args), env={"NO_COLOR": "1", "LOGCTL_CONFIG": "/nonexistent.toml", **env})


def test_query_command_prints_json_lines_of_the_matches(stored: tuple[str, list[list[Any]]]) -> None:
    uri, rows = stored
    result = cli("query", "--sink", uri, "--level", "error", "--service", "billing", "timeout", "-retry", "-o", "json")
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.stdout.splitlines()]
    query = Query(levels=levels_at_least(Level.ERROR), services=("billing",), terms=parse_terms(["timeout", "-retry"]))
    assert [r["id"] for r in got] == [r[0] for r in truth(rows, query)]
    assert set(got[0]) == {"id", "timestamp", "level", "service", "message", "trace_id", "attrs"}


def test_query_command_counts_per_level_as_json(stored: tuple[str, list[list[Any]]]) -> None:
    uri, rows = stored
    result = cli("query", "--sink", uri, "--count-by", "level", "-o", "json")
    assert result.exit_code == 0, result.output
    got = {o["level"]: o["count"] for o in map(json.loads, result.stdout.splitlines())}
    assert got == dict(Counter(r[2] for r in rows))


def test_query_command_draws_buckets_on_a_terminal(stored: tuple[str, list[list[Any]]]) -> None:
    uri, _rows = stored
    result = cli("query", "--sink", uri, "--count-by", "1d", "-o", "human")
    assert result.exit_code == 0, result.output
    assert "records per 1d" in result.stdout
    assert "2026-11-28T00:00:00.000Z" in result.stdout and "█" in result.stdout


def test_query_command_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    missing = cli("query", "--sink", f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.exit_code == 5 and "no records stored at" in missing.output
    fill(f"sqlite:///{tmp_path / 'x.db'}", generate(3))
    bad_since = cli("query", "--sink", f"sqlite:///{tmp_path / 'x.db'}", "--since", "yesterday")
    assert bad_since.exit_code == 3 and "ISO 8601" in bad_since.output
    typo = cli("query", "--sink", f"sqlite:///{tmp_path / 'x.db'}", "--levl", "ERROR")
    assert typo.exit_code == 3 and "no such option: --levl" in typo.output
    jsonl = cli("query", "--sink", f"file:///{tmp_path / 'x.jsonl'}")
    assert jsonl.exit_code == 3 and "cannot search sink" in jsonl.output
    assert "Traceback" not in missing.output + bad_since.output + typo.output + jsonl.output


def test_query_defaults_to_the_state_dirs_sqlite_sink(tmp_path: Path) -> None:
    fill(f"sqlite:///{tmp_path / 'state' / 'logs.db'}", generate(20))
    result = cli("query", "--count-by", "service", "-o", "json", LOGCTL_STATE_DIR=str(tmp_path / "state"))
    assert result.exit_code == 0, result.output
    assert sum(json.loads(line)["count"] for line in result.stdout.splitlines()) == 20


def test_prune_command_counts_in_a_dry_run_then_deletes(stored: tuple[str, list[list[Any]]]) -> None:
    uri, rows = stored
    cutoff = format_micros(BASE + 24 * HOUR)
    older = sum(1 for r in rows if r[1] // 1000 * 1000 < BASE + 24 * HOUR)
    dry = cli("prune", "--sink", uri, "--before", cutoff, "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["deleted"] == older
    real = cli("prune", "--sink", uri, "--before", cutoff, "-o", "json")
    assert json.loads(real.stdout) | {"sink": ""} == {"deleted": older, "before": cutoff, "dry_run": False, "sink": ""}
    again = cli("prune", "--sink", uri, "--before", cutoff, "-o", "json")
    assert json.loads(again.stdout)["deleted"] == 0
    no_unit = cli("prune", "--sink", uri, "--older-than", "3")
    assert no_unit.exit_code == 3 and "unit" in no_unit.output
