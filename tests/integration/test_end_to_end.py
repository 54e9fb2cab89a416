"""ship -> broker -> consume -> SQLite, counted end to end on the real broker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from logctl.codec import decode
from logctl.config import resolve
from logctl.consumer import ConsumeOptions, ConsumeStats, consume
from logctl.delivery import MAX_BATCH_BYTES
from logctl.sinks import open_sink
from logctl.transport import Broker, default_queue_name, topology_of
from tests.conftest import Env, amqp_connect, run_logctl

pytestmark = pytest.mark.integration

FORMATS = [
    '{{"time":"2026-11-27T11:32:10.123Z","level":"INFO","msg":"req {i}","service":"api"}}',
    'time=2026-11-27T11:32:10Z level=warn msg="slow {i}" service=db',
    '127.0.0.1 - - [27/Nov/2026:11:32:10 +0000] "GET /item/{i} HTTP/1.1" 500 512 "-" "curl/8"',
    "2026-11-27 11:32:10,123 - worker - ERROR - job {i} failed",
    "<13>Nov 27 11:32:10 host1 cron[42]: tick {i}",
]


def write_mixed(path: Path, count: int) -> None:
    with path.open("w") as fh:
        for i in range(count):
            fh.write(FORMATS[i % len(FORMATS)].format(i=i) + "\n")


def rows(db: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select id, level, message from records").fetchall()


def test_100k_lines_arrive_exactly_once_and_reshipping_adds_nothing(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "mixed.log"
    write_mixed(log, 100_000)
    db = tmp_path / "out.db"

    shipped = run_logctl(["ship", "--no-follow", str(log)], env)
    assert shipped.returncode == 0, shipped.stderr
    assert "lines=100000" in shipped.stderr
    consumed = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], env)
    assert consumed.returncode == 0, consumed.stderr
    # The rate is over the time to the last ack: the 2 s idle wait before exiting is not in it.
    summary = dict(field.split("=") for field in consumed.stderr.split("consumed ")[1].split())
    assert float(summary["seconds"]) - 100_000 / float(summary["records_per_s"]) > 1.0, summary

    got = rows(db)
    assert len(got) == 100_000
    assert len({r[0] for r in got}) == 100_000
    messages = {r[2] for r in got}
    for i in (0, 1, 2, 3, 4, 99_999):
        expected = {0: f"req {i}", 1: f"slow {i}", 3: f"job {i} failed", 4: f"tick {i}"}.get(i % 5)
        if expected is not None:
            assert expected in messages
    assert sum(1 for r in got if r[1] == "ERROR") == 40_000  # access 500s and worker errors

    # Same file again with the checkpoints gone: same ids, so no new row.
    for state in env.state_dir.iterdir():
        state.unlink()
    again = run_logctl(["ship", "--no-follow", str(log)], env)
    assert again.returncode == 0, again.stderr
    consumed = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], env)
    assert "duplicates=100000" in consumed.stderr
    assert len(rows(db)) == 100_000


def test_checkpoint_means_a_second_ship_sends_nothing(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    write_mixed(log, 500)
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    second = run_logctl(["ship", "--no-follow", str(log)], env)
    assert "records=0" in second.stderr
    status = run_logctl(["ship", "--status", "--output", "json"], env)
    assert status.returncode == 0, status.stderr
    import json

    (entry,) = [json.loads(line) for line in status.stdout.splitlines()]
    assert entry["path"] == str(log)
    assert entry["offset"] == log.stat().st_size
    assert entry["behind"] == 0


def test_stdin_is_shipped_and_consumed_to_a_jsonl_file(env: Env, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    lines = "".join(f"line {i}\n" for i in range(1000))
    shipped = run_logctl(["ship", "-", "--service", "pipe"], env, input=lines)
    assert shipped.returncode == 0, shipped.stderr
    consumed = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"file://{out}"], env)
    assert consumed.returncode == 0, consumed.stderr
    import json

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["message"] for r in records) == sorted(f"line {i}" for i in range(1000))
    assert {r["service"] for r in records} == {"pipe"}
    assert set(records[0]) == {"id", "timestamp", "level", "service", "message", "trace_id", "attrs"}


def test_two_stdin_runs_that_begin_with_the_same_line_are_both_stored(env: Env, tmp_path: Path) -> None:
    # A cron job's output often starts with the same banner every night: the second
    # night's lines must not be taken for the first night's and dropped by the sink.
    for night in ("monday", "tuesday"):
        lines = "starting nightly backup\n" + "".join(f"{night} step {i}\n" for i in range(100))
        shipped = run_logctl(["ship", "-", "--service", "backup"], env, input=lines)
        assert shipped.returncode == 0, shipped.stderr
    db = tmp_path / "out.db"
    consumed = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], env)
    assert consumed.returncode == 0, consumed.stderr
    expected = ["starting nightly backup"] * 2 + [f"{n} step {i}" for n in ("monday", "tuesday") for i in range(100)]
    assert sorted(message for _id, _level, message in rows(db)) == sorted(expected)


def test_records_published_before_any_consumer_queue_are_kept_not_dropped(env: Env, tmp_path: Path) -> None:
    env["LOGCTL_DEFAULT_QUEUE"] = "none"  # no queue bound at all: the alternate exchange must catch them
    log = tmp_path / "early.log"
    write_mixed(log, 50)
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    db = tmp_path / "unrouted.db"
    consumed = run_logctl(
        ["consume", "--queue", f"{env.exchange}.unrouted", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], env
    )
    assert consumed.returncode == 0, consumed.stderr
    assert len(rows(db)) == 50


@pytest.mark.parametrize("workers", ["0", "2"])
def test_batches_of_long_lines_stop_at_a_size_not_only_at_a_count(env: Env, tmp_path: Path, workers: str) -> None:
    """40 lines of 300 KiB: by count alone they would travel as one 12 MiB message
    (and 1,000 lines of 1 MiB as one the broker refuses); each batch stops near 4 MiB."""
    log = tmp_path / "long.log"
    line_bytes = 300 << 10
    with log.open("w") as fh:
        for i in range(40):
            fh.write(f"2026-11-27 11:32:10,123 - app - INFO - line {i} " + "x" * line_bytes + "\n")
    shipped = run_logctl(["ship", "--no-follow", "--workers", workers, str(log)], env)
    assert shipped.returncode == 0, shipped.stderr

    conn = amqp_connect()
    try:
        ch = conn.channel()
        sizes, messages = [], []
        while (msg := ch.basic_get(f"{env.exchange}.default", no_ack=True)) is not None:
            sizes.append(len(msg.body))
            messages.extend(r.message for r in decode(msg.body, msg.content_type))
    finally:
        conn.close()
    assert sorted(messages) == sorted(f"line {i} " + "x" * line_bytes for i in range(40))
    assert len(sizes) >= 3, sizes
    assert max(sizes) <= MAX_BATCH_BYTES + line_bytes + 1024, sizes


def test_a_sink_write_holds_batch_size_records_however_full_the_prefetch_window(env: Env, tmp_path: Path) -> None:
    """50 messages of 100 records wait in the prefetch window; each write takes 300 of them."""
    log = tmp_path / "mixed.log"
    write_mixed(log, 5_000)
    assert run_logctl(["ship", "--no-follow", "--batch-size", "100", str(log)], env).returncode == 0

    settings = resolve({}, env, None)
    per_batch: list[int] = []

    def on_batch(stats: ConsumeStats) -> None:
        per_batch.append(stats.records - sum(per_batch))

    sink = open_sink(f"sqlite:///{tmp_path / 'out.db'}")
    queue = default_queue_name(settings)
    assert queue is not None
    options = ConsumeOptions(queue, batch_size=300, prefetch=50, exit_when_idle=1.0)
    try:
        with Broker(settings, lambda _message: None) as broker:
            stats = consume(broker, topology_of(settings), sink, options, on_batch=on_batch)
    finally:
        sink.close()
    assert stats.stored == 5_000 and sum(per_batch) == 5_000
    assert max(per_batch) == 300, per_batch
    assert len(rows(tmp_path / "out.db")) == 5_000
