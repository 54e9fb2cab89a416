"""The PostgreSQL sink end to end, several consume workers on one queue, and --dedupe.

Every case counts the exact set of line numbers in the sink."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Env, run_logctl, sink_messages, start_logctl
from tests.numbered import assert_exactly_once, numbered, sequence_numbers

pytestmark = pytest.mark.integration
PG_URL = os.environ.get("LOGCTL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LOGCTL_TEST_REDIS", "redis://127.0.0.1:6379/15")


@pytest.fixture
def pg_sink() -> str:
    table = f"t_{uuid.uuid4().hex[:10]}"
    yield f"{PG_URL}?table={table}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"drop table if exists {table}")


def pg_messages(sink: str) -> list[str]:
    table = sink.rsplit("table=", 1)[1]
    with psycopg.connect(PG_URL) as conn:
        exists = conn.execute("select to_regclass(%s)", (table,)).fetchone()
        if exists is None or exists[0] is None:
            return []
        return [m for (m,) in conn.execute(f"select message from {table}").fetchall()]


def stored(sink: str) -> list[int]:
    messages = pg_messages(sink) if sink.startswith("postgresql") else sink_messages(sink)
    return sequence_numbers(messages)


def ship_numbered(env: Env, tmp_path: Path, total: int, batch: int = 100) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, total))
    result = run_logctl(["ship", "--no-follow", "--batch-size", str(batch), str(log)], env)
    assert result.returncode == 0, result.stderr


def wait_stored(sink: str, count: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    have = 0
    while time.time() < deadline:
        try:
            have = len(stored(sink))
        except Exception:  # noqa: BLE001 - a sink being created
            have = 0
        if have >= count:
            return
        time.sleep(0.2)
    pytest.fail(f"the sink holds {have} records after {timeout:g} s, not {count}")


def test_consume_into_postgresql_stores_each_record_once(env: Env, tmp_path: Path, pg_sink: str) -> None:
    ship_numbered(env, tmp_path, 20_000)
    first = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", pg_sink], env)
    assert first.returncode == 0, first.stderr
    assert "stored=20000" in first.stderr
    ship_numbered(env, tmp_path / "..", 20_000)  # the same lines shipped again from another state: same ids
    assert_exactly_once(stored(pg_sink), 20_000)


def test_postgresql_errors_are_one_line(env: Env) -> None:
    missing = run_logctl(["consume", "--exit-when-idle", "0.1s", "--sink", f"{PG_URL}_nope"], env)
    assert missing.returncode == 5 and "does not exist" in missing.stderr
    refused = run_logctl(
        ["consume", "--exit-when-idle", "0.1s", "--sink", "postgresql://postgres@127.0.0.1:1/test"], env
    )
    assert refused.returncode == 4 and "PostgreSQL at 127.0.0.1:1" in refused.stderr
    for result in (missing, refused):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_connection_dropped_mid_batch_loses_nothing(env: Env, tmp_path: Path, pg_sink: str) -> None:
    total = 60_000
    ship_numbered(env, tmp_path, total, batch=50)
    worker = start_logctl(["consume", "--prefetch", "1", "--batch-size", "50", "--sink", pg_sink], env, text=True)
    try:
        wait_stored(pg_sink, 1)
        deadline = time.time() + 60
        with psycopg.connect(PG_URL, autocommit=True) as conn:  # an operator ends consume's session
            while worker.poll() is None and time.time() < deadline:
                assert len(stored(pg_sink)) < total, "consume finished before its session was ended"
                conn.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity where application_name = %s",
                    ("logctl consume",),
                )
                time.sleep(0.2)
        _out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 4, err
    assert "not acked" in err.strip().splitlines()[-1], err
    assert len(stored(pg_sink)) < total
    rest = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", pg_sink], env)
    assert rest.returncode == 0, rest.stderr
    assert_exactly_once(stored(pg_sink), total)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_sharing_a_queue_store_each_record_once(
    env: Env, tmp_path: Path, pg_sink: str, kind: str, workers: int
) -> None:
    total = 40_000
    ship_numbered(env, tmp_path, total, batch=50)
    sink = f"sqlite:///{tmp_path / 'shared.db'}" if kind == "sqlite" else pg_sink
    args = ["consume", "--prefetch", "4", "--batch-size", "200", "--sink", sink]
    procs = [start_logctl(args, env) for _ in range(workers)]
    try:
        if workers > 1:
            wait_stored(sink, total // 4)
            procs[0].send_signal(signal.SIGKILL)  # its unacked messages go to the others
            procs[0].wait()
        wait_stored(sink, total)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.communicate(timeout=60)
    assert_exactly_once(stored(sink), total)


def test_dedupe_shares_one_id_memory_between_workers_writing_different_files(env: Env, tmp_path: Path) -> None:
    """Every record arrives twice (the file shipped again from a lost state dir: the same
    ids); two workers write files of their own. Each file sink drops only what its own
    file holds, so without --dedupe the copies that land in the other file stay."""
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    total = 20_000
    log = tmp_path / "app.log"
    log.write_text(numbered(0, total))
    for state in ("one", "two"):
        shipped = run_logctl(
            ["ship", "--no-follow", "--batch-size", "100", "--state-dir", str(tmp_path / state), str(log)], env
        )
        assert shipped.returncode == 0, shipped.stderr
    files = [f"file://{tmp_path / f'w{i}.jsonl'}" for i in range(2)]
    args = ["consume", "--dedupe", REDIS_URL, "--prefetch", "4", "--batch-size", "200", "--exit-when-idle", "2s"]
    workers = [start_logctl([*args, "--sink", sink], env, text=True) for sink in files]
    for worker in workers:
        _out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    per_file = [stored(sink) for sink in files]
    assert all(per_file), "both workers took a share"
    assert_exactly_once(sorted(per_file[0] + per_file[1]), total)


def test_dedupe_needs_a_redis_url(env: Env) -> None:
    result = run_logctl(["consume", "--dedupe", "http://x", "--exit-when-idle", "0.1s"], env)
    assert result.returncode == 3 and "redis://" in result.stderr
