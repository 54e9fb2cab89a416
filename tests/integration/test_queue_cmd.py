"""logctl queue: list the topology, and bindings changed under a running consumer."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Env, run_logctl, sink_messages, start_logctl

pytestmark = pytest.mark.integration


def _ship(env: Env, tmp_path: Path, name: str, lines: list[str]) -> None:
    log = tmp_path / f"{name}.log"
    log.write_text("".join(f"{line}\n" for line in lines))
    result = run_logctl(["ship", "--no-follow", "--linger-ms", "10", str(log)], env)
    assert result.returncode == 0, result.stderr


def _wait_for(db: Path, count: int, timeout: float = 30) -> list[str]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            messages = sink_messages(db)
        except Exception:  # noqa: BLE001 - the sink may be mid-creation
            messages = []
        if len(messages) >= count:
            return messages
        time.sleep(0.1)
    pytest.fail(f"the sink holds {len(sink_messages(db))} records after {timeout:g} s, not {count}")


def test_bind_and_unbind_change_what_a_running_consumer_receives(env: Env, tmp_path: Path) -> None:
    queue = env.queue("errors")
    env["LOGCTL_DEFAULT_QUEUE"] = "none"
    db = tmp_path / "out.db"
    worker = start_logctl(["consume", "--queue", queue, "--bind", "*.error", "--sink", f"sqlite:///{db}"], env)
    try:
        time.sleep(2)  # the queue is declared and consumed
        _ship(env, tmp_path, "one", ['level=info msg="a: quiet"', 'level=error msg="a: loud"'])
        assert sorted(_wait_for(db, 1)) == ["a: loud"]
        bound = run_logctl(["queue", "bind", queue, "#"], env)
        assert bound.returncode == 0, bound.stderr
        _ship(env, tmp_path, "two", ['level=info msg="b: quiet"', 'level=error msg="b: loud"'])
        assert sorted(_wait_for(db, 3)) == ["a: loud", "b: loud", "b: quiet"]
        listed = run_logctl(["queue", "list", "--output", "json"], env)
        assert listed.returncode == 0, listed.stderr
        views = {v["name"]: v for v in map(json.loads, listed.stdout.splitlines())}
        assert views[queue]["patterns"] == ["#", "*.error"]
        assert {f"{env.exchange}.dlq", f"{env.exchange}.unrouted"} <= set(views)
        unbound = run_logctl(["queue", "unbind", queue, "#"], env)
        assert unbound.returncode == 0, unbound.stderr
        _ship(env, tmp_path, "three", ['level=info msg="c: quiet"', 'level=error msg="c: loud"'])
        assert sorted(_wait_for(db, 4)) == ["a: loud", "b: loud", "b: quiet", "c: loud"]
        time.sleep(1)  # and no quiet one comes after
        assert len(sink_messages(db)) == 4
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    assert worker.returncode == 0


def test_binding_a_missing_queue_is_exit_5(env: Env) -> None:
    result = run_logctl(["queue", "bind", f"{env.exchange}.nope", "#"], env)
    assert result.returncode == 5 and "does not exist" in result.stderr


def test_top_once_as_json_and_fail_if_dlq_for_monitoring_checks(env: Env, tmp_path: Path) -> None:
    from logctl.codec import MSGPACK_TYPE
    from tests.integration.test_foreign import publish

    queue = env.queue("watched")
    first = run_logctl(
        ["consume", "--queue", queue, "--bind", "w.#", "--exit-when-idle", "0.1s", "--sink", "stdout"], env
    )
    assert first.returncode == 0, first.stderr
    clean = run_logctl(["top", "--once", "--fail-if-dlq", "--output", "json"], env)
    assert clean.returncode == 0, clean.stderr
    views = {v["name"]: v for v in map(json.loads, clean.stdout.splitlines())}
    assert views[f"{env.exchange}.dlq"]["role"] == "dlq" and views[queue]["patterns"] == ["w.#"]
    publish(env.exchange, "w.info", b"\xc1 junk", content_type=MSGPACK_TYPE)
    drained = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "0.5s", "--sink", "stdout"], env)
    assert "dead_lettered=1" in drained.stderr
    deadline = time.time() + 20  # the management API refreshes its figures every 5 s
    while True:
        check = run_logctl(["top", "--once", "--fail-if-dlq", "--output", "json"], env)
        if check.returncode == 7 or time.time() > deadline:
            break
        time.sleep(1)
    assert check.returncode == 7 and "wait in the dead-letter queue" in check.stderr
    views = {v["name"]: v for v in map(json.loads, check.stdout.splitlines())}
    assert views[f"{env.exchange}.dlq"]["messages"] == 1


def test_tops_tap_counts_records_not_messages_and_gives_them_to_the_queues_that_match(env: Env, tmp_path: Path) -> None:
    from logctl.config import from_environment
    from logctl.tap import RecordTap, records_per_s

    settings = from_environment(url=env["LOGCTL_URL"], exchange=env["LOGCTL_EXCHANGE"])
    log = tmp_path / "mixed.log"
    log.write_text("".join(f"2026-12-03T10:00:00Z {'ERROR' if i % 3 == 0 else 'INFO'} line {i}\n" for i in range(3000)))
    declared = run_logctl(["consume", "--exit-when-idle", "0.1s", "--sink", "stdout"], env)  # the topology
    assert declared.returncode == 0, declared.stderr
    with RecordTap(settings) as tap:
        assert tap.wait_ready(30) and tap.error is None
        shipped = run_logctl(["ship", "--no-follow", str(log)], env)
        assert shipped.returncode == 0, shipped.stderr
        deadline = time.time() + 30
        while sum(tap.totals.values()) < 3000 and time.time() < deadline:
            time.sleep(0.1)
    assert dict(tap.totals) == {"mixed.error": 1000, "mixed.info": 2000}  # records, from far fewer messages
    rates = {"mixed.error": 10.0, "mixed.info": 20.0, "other.info": 5.0}
    assert records_per_s(rates, ["*.error"]) == 10.0 and records_per_s(rates, ["mixed.#"]) == 30.0
