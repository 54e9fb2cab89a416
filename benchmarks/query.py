"""What finding a stored record costs, and what the search index costs consume; prints tables.

    .venv/bin/python benchmarks/query.py                      # SQLite and PostgreSQL, 100k and 1M records
    .venv/bin/python benchmarks/query.py --big 10000000       # and the common filter on 10M (SQLite)
    .venv/bin/python benchmarks/query.py --sizes 100000 --no-postgres

1. Stores are filled through the sinks, as consume fills them (batches of 8,192), and the
   rate is printed: the SQLite sink with its indexes and FTS5 index, against the table of
   logctl before ``query`` (one primary key, nothing else) in the same run.
2. Each query is timed (best of 5) on each size: a needle (a rare word, a trace id) must
   cost about the same on 1M as on 100k, since an index finds it; the ratio is printed.

The records: 20 services, levels weighted as real logs are (INFO most), messages of 5-12
words from a vocabulary of 3,000 (Zipf-like), times over 30 days in arrival order, a
trace id on one record in ten, and the needle word in 10 records of each store.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logctl.query import Query, counts, open_store
from logctl.query.model import Group, Grouping, levels_at_least, parse_terms
from logctl.records import Level, format_micros
from logctl.sinks import open_sink

PG_URL = os.environ.get("LOGCTL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
NEEDLE = "zqxneedle"
START = 1_764_547_200_000_000  # 2025-12-01
SPAN = 30 * 86_400_000_000
LEVELS = [Level.INFO] * 70 + [Level.DEBUG] * 15 + [Level.WARN] * 8 + [Level.ERROR] * 5 + [Level.FATAL, Level.TRACE]
V1_SCHEMA = """CREATE TABLE records (id TEXT PRIMARY KEY, timestamp TEXT NOT NULL, level TEXT NOT NULL,
    service TEXT NOT NULL, message TEXT NOT NULL, trace_id TEXT, attrs TEXT NOT NULL) WITHOUT ROWID"""


def vocabulary(rng: random.Random) -> list[str]:
    common = [
        "timeout",
        "connection",
        "reset",
        "request",
        "served",
        "failed",
        "retry",
        "cache",
        "user",
        "order",
        "payment",
        "upstream",
    ]
    made = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(3000)]
    return common + made


def make_rows(count: int, seed: int = 1) -> tuple[list[list[Any]], str]:
    """``count`` records in arrival order; returns them and one trace id that occurs once."""
    rng = random.Random(seed)
    words = vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(words))]
    messages = [" ".join(rng.choices(words, weights, k=rng.randint(5, 12))) for _ in range(20_000)]
    services = [f"svc{n}" for n in range(20)]
    needles = set(rng.sample(range(count), 10))
    step = SPAN // count
    rows: list[list[Any]] = []
    known_trace = ""
    for i in range(count):
        message = messages[i % len(messages)] if i not in needles else f"payment {NEEDLE} declined"
        trace = f"{rng.getrandbits(128):032x}" if i % 10 == 0 else None
        if i == count // 2:
            known_trace = trace or ""
        stamp = START + i * step + rng.randrange(1_000_000)
        rows.append(
            [f"bench{seed}-{i:012x}", stamp, rng.choice(LEVELS), rng.choice(services), message, trace, {"n": i}]
        )
    return rows, known_trace or str(rows[count // 2 - count // 2 % 10][5])


def fill(uri: str, rows: list[list[Any]], batch: int = 8192) -> float:
    """Store the rows through the sink; return records a second."""
    sink = open_sink(uri)
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        sink.store(sink.prepare(rows[start : start + batch]))
    seconds = time.perf_counter() - started
    sink.close()
    return len(rows) / seconds


def fill_v1(path: Path, rows: list[list[Any]], batch: int = 8192) -> float:
    """The same rows into the table of logctl before query (no index but the key), as its sink wrote them."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute(V1_SCHEMA)
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        db.execute("BEGIN")
        for s in range(0, len(part), 4096):
            piece = [(r[0], format_micros(r[1]), r[2].value, r[3], r[4], r[5], '{"n":1}') for r in part[s : s + 4096]]
            db.execute(
                "INSERT OR IGNORE INTO records VALUES " + ",".join(["(?,?,?,?,?,?,?)"] * len(piece)),
                tuple(chain.from_iterable(piece)),
            )
        db.execute("COMMIT")
    seconds = time.perf_counter() - started
    db.close()
    return len(rows) / seconds


def best_of(fn: Callable[[], object], runs: int = 5) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def queries(trace: str) -> list[tuple[str, Query | tuple[Query, Grouping]]]:
    last_day = START + SPAN - 86_400_000_000
    return [
        ("needle word", Query(terms=parse_terms([NEEDLE]))),
        ("trace id", Query(trace_id=trace)),
        ("needle phrase", Query(terms=parse_terms([f"{NEEDLE} declined"]))),
        (
            "--level ERROR --service svc3 timeout (limit 50)",
            Query(levels=levels_at_least(Level.ERROR), services=("svc3",), terms=parse_terms(["timeout"]), limit=50),
        ),
        (
            "--level ERROR --service svc3 timeout (all)",
            Query(levels=levels_at_least(Level.ERROR), services=("svc3",), terms=parse_terms(["timeout"])),
        ),
        (
            "--level ERROR --since last day (limit 50)",
            Query(levels=levels_at_least(Level.ERROR), since=last_day, limit=50),
        ),
        ("--count-by 1h --since last day", (Query(since=last_day), Grouping(Group.TIME, 3600))),
    ]


def time_queries(uri: str, trace: str) -> dict[str, tuple[float, int]]:
    store = open_store(uri)
    figures = {}
    try:
        for name, q in queries(trace):
            if isinstance(q, tuple):
                seconds, result = best_of(lambda q=q: counts(store, *q))
            else:
                seconds, result = best_of(lambda q=q: list(store.search(q)))
            figures[name] = (seconds, len(result))  # type: ignore[arg-type]
    finally:
        store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--big", type=int, default=0, help="also the common filter on a SQLite store this large")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="logctl-query-bench-"))
    kinds = ["sqlite"] + ([] if args.no_postgres else ["postgresql"])
    results: dict[tuple[str, int], dict[str, tuple[float, int]]] = {}
    print(f"{'store':<11} {'records':>10} {'stored/s (indexed)':>19} {'stored/s (v1, no index)':>24}")
    for size in args.sizes:
        rows, trace = make_rows(size)
        for kind in kinds:
            uri = f"sqlite:///{work / f'{size}.db'}" if kind == "sqlite" else f"{PG_URL}?table=bench_query_{size}"
            if kind == "postgresql":
                _drop_pg(uri)
            rate = fill(uri, rows)
            plain = fill_v1(work / f"{size}-v1.db", rows) if kind == "sqlite" else None
            plain_text = f"{plain:>24,.0f}" if plain else f"{'':>24}"
            print(f"{kind:<11} {size:>10,} {rate:>19,.0f} {plain_text}", flush=True)
            results[(kind, size)] = time_queries(uri, trace)
            if kind == "postgresql":
                _drop_pg(uri)
        del rows
    print()
    for kind in kinds:
        print(f"{kind}: best of 5, milliseconds (matches)")
        names = [name for name, _ in queries("")]
        header = "".join(f"{size:>22,}" for size in args.sizes)
        print(f"  {'query':<48}{header}{'ratio last/first':>18}")
        for name in names:
            cells = [results[(kind, size)][name] for size in args.sizes]
            text = "".join(f"{s * 1000:>14.2f} ({n:>5})" for s, n in cells)
            ratio = cells[-1][0] / cells[0][0] if cells[0][0] else float("nan")
            print(f"  {name:<48}{text}{ratio:>18.2f}")
        print()
    if args.big:
        rows, trace = make_rows(args.big, seed=3)
        uri = f"sqlite:///{work / 'big.db'}"
        rate = fill(uri, rows)
        del rows
        print(f"sqlite, {args.big:,} records (stored at {rate:,.0f}/s): best of 5, milliseconds (matches)")
        for name, (seconds, n) in time_queries(uri, trace).items():
            print(f"  {name:<48}{seconds * 1000:>14.2f} ({n:>5})")
    for leftover in work.iterdir():
        leftover.unlink()
    work.rmdir()


def _drop_pg(uri: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {uri.rsplit('table=', 1)[1]}")


if __name__ == "__main__":
    main()
