"""Broker faults on a broker of the test's own: restart during shipping, publishers blocked by an alarm."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_rabbitmq.factories.executor import RabbitMqExecutor

from tests.conftest import Env, run_logctl, start_logctl
from tests.fault.test_ship_faults import (
    shipped_numbers,
    start_ship,
    stop_ship,
    wait_caught_up,
)
from tests.numbered import NumberedWriter, assert_exactly_once, numbered

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def ship_through(env: Env, tmp_path: Path, fault: Callable[[], None]) -> None:
    """A writer appends while ship follows; ``fault`` happens mid-way; then every line is counted."""
    log = tmp_path / "app.log"
    log.touch()
    writer = NumberedWriter(log, rate_per_s=3000)
    writer.start()
    proc = start_ship(env, str(log))
    time.sleep(2)
    fault()
    time.sleep(2)
    written = writer.stop()
    wait_caught_up(env, log, timeout=90)
    stop_ship(proc)
    assert_exactly_once(shipped_numbers(env, tmp_path), written)


def test_broker_restart_during_shipping_loses_and_doubles_nothing(
    own_env: Env, own_broker: RabbitMqExecutor, tmp_path: Path
) -> None:
    def restart() -> None:
        own_broker.stop()
        time.sleep(3)  # ship keeps running, stops reading, retries
        own_broker.start()

    ship_through(own_env, tmp_path, restart)


def test_memory_alarm_blocks_publishers_then_shipping_resumes(
    own_env: Env, own_broker: RabbitMqExecutor, tmp_path: Path
) -> None:
    def alarm() -> None:
        own_broker.rabbitctl_output("set_vm_memory_high_watermark", "0.0000001")
        try:
            time.sleep(4)
        finally:
            own_broker.rabbitctl_output("set_vm_memory_high_watermark", "0.4")

    ship_through(own_env, tmp_path, alarm)


def test_following_ship_started_while_the_broker_is_down_waits_for_it(
    own_env: Env, own_broker: RabbitMqExecutor, tmp_path: Path
) -> None:
    import signal

    own_env["LOGCTL_CONNECT_RETRIES"] = "0"
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 500))
    own_broker.stop()
    try:
        proc = start_ship(own_env, str(log))
        time.sleep(4)
        assert proc.poll() is None, "a following ship must wait for the broker, not exit"
    finally:
        own_broker.start()
    with log.open("a") as fh:
        fh.write(numbered(500, 800))
    wait_caught_up(own_env, log, timeout=90)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert "waiting for it" in err.decode()
    assert_exactly_once(shipped_numbers(own_env, tmp_path), 800)


def test_connection_closed_by_the_broker_during_shipping_loses_and_doubles_nothing(
    own_env: Env, own_broker: RabbitMqExecutor, tmp_path: Path
) -> None:
    """CONNECTION_FORCED (an operator's close_connection, a broker shutting down) is a lost
    connection: ship reconnects and resends what was unconfirmed."""

    def close_connections() -> None:
        own_broker.rabbitctl_output("close_all_connections", "closed by the test")

    ship_through(own_env, tmp_path, close_connections)


def test_stdin_stopped_while_the_broker_blocks_publishers_says_how_to_ship_it_again(
    own_env: Env, own_broker: RabbitMqExecutor, tmp_path: Path
) -> None:
    """Unconfirmed stdin cannot be read again: the stop notice says so, and the named rerun stores all."""
    total = 5000
    ship = ["ship", "-", "--source-id", "job-7", "--linger-ms", "50"]
    own_broker.rabbitctl_output("set_vm_memory_high_watermark", "0.0000001")  # no publish is taken, none confirmed
    try:
        proc = start_logctl([*ship, "--shutdown-timeout", "1s"], own_env, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        proc.stdin.write(numbered(0, total).encode())
        proc.stdin.flush()
        time.sleep(3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)  # it waits for confirms 1 s, not for the alarm to clear
    finally:
        own_broker.rabbitctl_output("set_vm_memory_high_watermark", "0.4")
    assert "still unconfirmed after 1s" in err.decode(), err.decode()
    assert "reconnecting" not in err.decode()  # a blocked connection is kept, not dropped and made again
    assert "shipped again under the same --source-id" in err.decode()
    assert run_logctl(ship, own_env, input=numbered(0, total)).returncode == 0
    assert_exactly_once(shipped_numbers(own_env, tmp_path), total)
