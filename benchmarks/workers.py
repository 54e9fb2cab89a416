"""consume into PostgreSQL and SQLite with 1, 2 and 4 workers on one queue, in one run.

    .venv/bin/python benchmarks/workers.py                    # 400,000 records a case
    .venv/bin/python benchmarks/workers.py --records 1000000

Each case ships the records once (batches of 2,048), then starts the workers together
and times them from start until the sink holds every record (polled), so start-up is
included, as an operator would see it. Needs the local RabbitMQ and PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG = os.environ.get("LOGCTL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def count(sink: str, workdir: Path) -> int:
    if sink.startswith("sqlite"):
        path = Path(sink.removeprefix("sqlite:///"))
        if not path.exists():
            return 0
        with sqlite3.connect(path) as conn:
            try:
                return int(conn.execute("select count(*) from records").fetchone()[0])
            except sqlite3.Error:
                return 0
    table = sink.rsplit("table=", 1)[1]
    with psycopg.connect(PG) as conn:
        if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None:
            return 0
        return int(conn.execute(f"select count(*) from {table}").fetchone()[0])


def case(kind: str, workers: int, records: int, log: Path) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="logctl-workers-"))
    exchange = f"bench-w-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LOGCTL_EXCHANGE": exchange, "LOGCTL_STATE_DIR": str(workdir / "state"), "NO_COLOR": "1"}
    run = [sys.executable, "-m", "logctl"]
    subprocess.run([*run, "ship", "--no-follow", str(log)], env=env, cwd=ROOT, check=True, capture_output=True)
    table = f"bench_{uuid.uuid4().hex[:8]}"
    sink = f"sqlite:///{workdir / 'sink.db'}" if kind == "sqlite" else f"{PG}?table={table}"
    started = time.monotonic()
    procs = [
        subprocess.Popen([*run, "consume", "--exit-when-idle", "3s", "--sink", sink], env=env, cwd=ROOT,
                         stderr=subprocess.DEVNULL)  # fmt: skip
        for _ in range(workers)
    ]
    while count(sink, workdir) < records:
        time.sleep(0.05)
    seconds = time.monotonic() - started
    for proc in procs:
        proc.wait(120)
    subprocess.run([*run, "consume", "--exit-when-idle", "0.1s", "--sink", "stdout"], env=env, cwd=ROOT,
                   capture_output=True)  # fmt: skip
    _cleanup(exchange, table if kind == "postgresql" else None)
    return records / seconds


def _cleanup(exchange: str, table: str | None) -> None:
    import amqp

    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    channel = conn.channel()
    for queue in (f"{exchange}.default", f"{exchange}.unrouted", f"{exchange}.dlq"):
        channel.queue_delete(queue)
    for name in (exchange, f"{exchange}.unrouted", f"{exchange}.dlx"):
        channel.exchange_delete(name)
    conn.close()
    if table:
        with psycopg.connect(PG, autocommit=True) as pg:
            pg.execute(f"drop table {table}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=400_000)
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="logctl-workers-")) / "app.log"
    with log.open("w") as fh:
        for i in range(args.records):
            fh.write(f'ts=2026-11-27T10:00:00Z level=info service=api msg="request {i} handled" user={i % 977}\n')
    print(f"{args.records:,} records a case, workers started together, until the sink holds them all")
    for kind in ("postgresql", "sqlite"):
        for workers in (1, 2, 4):
            rate = case(kind, workers, args.records, log)
            print(f"consume -> {kind:10} {workers} worker(s)  {rate:10,.0f} records/s")


if __name__ == "__main__":
    main()
