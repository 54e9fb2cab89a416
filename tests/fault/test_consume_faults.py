"""Fault tests for consume: kill it mid-batch, restart the broker under it; count rows end to end."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_rabbitmq.factories.executor import RabbitMqExecutor

from tests.conftest import Env, run_logctl, sink_messages, start_logctl
from tests.numbered import assert_exactly_once, numbered, sequence_numbers

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def append_numbered(path: Path, start: int, stop: int) -> None:
    with path.open("a") as fh:
        fh.write(numbered(start, stop))


def start_consume(env: Env, sink: str, prefetch: int = 5) -> subprocess.Popen[bytes]:
    """consume with small batches, so that a kill lands between fetch, commit and ack."""
    args = ["consume", "--sink", sink, "--prefetch", str(prefetch), "--batch-size", "50"]
    return start_logctl(args, env)


def stored(sink: str) -> list[int]:
    """The sequence numbers in a sqlite:/// or file:// sink."""
    return sequence_numbers(sink_messages(sink))


def wait_for_rows(sink: str, count: int, timeout: float = 90) -> None:
    """Wait until the sink holds ``count`` rows; fail the test, saying how far it got, if it never does."""
    deadline = time.time() + timeout
    have = 0
    while time.time() < deadline:
        try:
            have = len(stored(sink))
            if have >= count:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    pytest.fail(f"the sink holds {have} rows after {timeout:g} s, not {count}")


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_consume_killed_mid_batch_again_and_again_stores_each_record_once(env: Env, tmp_path: Path, kind: str) -> None:
    import random

    total = 100_000
    log = tmp_path / "app.log"
    append_numbered(log, 0, total)
    # Small messages (batch size 50), so there are many deliveries to be caught between commit and ack.
    result = run_logctl(["ship", "--no-follow", "--batch-size", "50", str(log)], env)
    assert result.returncode == 0, result.stderr
    sink = f"sqlite:///{tmp_path / 'sink.db'}" if kind == "sqlite" else f"file://{tmp_path / 'sink.jsonl'}"
    rng = random.Random(7)
    kills_mid_stream = 0
    for _ in range(6):
        before = len(stored(sink))
        if before >= total:
            break  # drained already: no kill can land mid-stream any more
        proc = start_consume(env, sink, prefetch=1)  # one 50-record message per fsynced commit: slow on purpose
        # Kill once records are moving, however long startup took on a busy machine.
        wait_for_rows(sink, before + 1)
        time.sleep(rng.uniform(0.0, 0.1))
        proc.kill()
        proc.wait()
        kills_mid_stream += 0 < len(stored(sink)) < total
    assert kills_mid_stream >= 3, kills_mid_stream  # the kills landed while records were moving
    final = start_consume(env, sink)
    wait_for_rows(sink, total)
    time.sleep(1)  # let it settle into its loop before the signal
    final.send_signal(signal.SIGTERM)
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err.decode()
    assert_exactly_once(stored(sink), total)


def consume_through(env: Env, tmp_path: Path, fault: Callable[[], None]) -> None:
    """consume drains 5,000 records; ``fault`` happens once rows arrive; 3,000 more are
    shipped after it. consume must reconnect, store every record once, leave nothing
    unacked, and exit cleanly on SIGTERM."""
    log = tmp_path / "app.log"
    append_numbered(log, 0, 5000)
    assert run_logctl(["ship", "--no-follow", "--batch-size", "100", str(log)], env).returncode == 0
    sink = f"sqlite:///{tmp_path / 'sink.db'}"
    proc = start_consume(env, sink)
    try:
        wait_for_rows(sink, 1)
        fault()
        append_numbered(log, 5000, 8000)
        assert run_logctl(["ship", "--no-follow", "--batch-size", "100", str(log)], env).returncode == 0
        wait_for_rows(sink, 8000)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "reconnected" in err.decode()
    assert_exactly_once(stored(sink), 8000)
    # And it acked after the reconnect: nothing is left waiting in the queue.
    again = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{tmp_path / 'rest.db'}"], env)
    assert "messages=0" in again.stderr


def test_consume_survives_a_broker_restart_and_keeps_acking(
    own_env: Env, own_broker: RabbitMqExecutor, tmp_path: Path
) -> None:
    def restart() -> None:
        own_broker.stop()
        time.sleep(3)
        own_broker.start()

    consume_through(own_env, tmp_path, restart)


def test_consume_reconnects_when_the_broker_closes_its_connection(
    own_env: Env, own_broker: RabbitMqExecutor, tmp_path: Path
) -> None:
    """An operator (or a broker shutting down) closes the connection: the broker says
    CONNECTION_FORCED rather than dropping the socket. consume must take it as a lost
    connection and reconnect, not exit."""
    consume_through(
        own_env, tmp_path, lambda: own_broker.rabbitctl_output("close_all_connections", "closed by the test")
    )


@pytest.mark.parametrize("kind", ["sqlite", "file"])
def test_two_consumers_into_one_sink_one_killed_store_each_record_once(env: Env, tmp_path: Path, kind: str) -> None:
    """Workers scaled out onto one sink take turns at it; a kill costs neither of them a line."""
    total = 60_000
    log = tmp_path / "app.log"
    append_numbered(log, 0, total)
    assert run_logctl(["ship", "--no-follow", "--batch-size", "50", str(log)], env).returncode == 0
    sink = f"sqlite:///{tmp_path / 'sink.db'}" if kind == "sqlite" else f"file://{tmp_path / 'sink.jsonl'}"
    steady, doomed = start_consume(env, sink, prefetch=2), start_consume(env, sink, prefetch=2)
    try:
        wait_for_rows(sink, total // 4)
        doomed.kill()  # mid-stream: its last batch may be written and not yet committed, or committed and not acked
        doomed.wait()
        assert len(stored(sink)) < total, "both finished before the kill: ship more lines"
        wait_for_rows(sink, total)
        time.sleep(1)
    finally:
        steady.send_signal(signal.SIGTERM)
        _, err = steady.communicate(timeout=60)
    assert steady.returncode == 0, err.decode()
    # Whatever was still unacked (the killed one's last deliveries) is drained here, into the same file.
    drained = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", sink], env)
    assert drained.returncode == 0, drained.stderr
    assert_exactly_once(stored(sink), total)
