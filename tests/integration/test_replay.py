"""replay on the real broker: real rejections, expiry and max-length; filters, dry run, kill and rerun."""

from __future__ import annotations

import json
import subprocess
import time

import amqp
import pytest

from tests.conftest import Env, amqp_connect, run_logctl, start_logctl

pytestmark = pytest.mark.integration


def connect() -> amqp.Connection:
    return amqp_connect()


def publish(ch: amqp.Channel, exchange: str, key: str, body: str, **headers: object) -> None:
    ch.basic_publish(
        amqp.Message(body.encode(), content_type="text/plain", delivery_mode=2, application_headers=dict(headers)),
        exchange=exchange,
        routing_key=key,
    )


def drain(ch: amqp.Channel, queue: str) -> list[amqp.Message]:
    out = []
    while (msg := ch.basic_get(queue, no_ack=True)) is not None:
        out.append(msg)
    return out


def depth(ch: amqp.Channel, queue: str) -> int:
    return int(ch.queue_declare(queue, passive=True)[1])


@pytest.fixture
def dead_letters(env: Env) -> dict[str, str]:
    """Dead-letter 5 rejected messages from queue a, 2 maxlen and 3 expired from queue b.

    Afterwards b is declared again without TTL or length limit, so replayed messages stay.
    """
    qa, qb = env.queue("a"), env.queue("b")
    declare_consumer_queue(env, qa, "a.*")
    conn = connect()
    ch = conn.channel()
    ch.confirm_select()
    dlx = f"{env.exchange}.dlx"
    ch.queue_declare(
        qb, durable=True, arguments={"x-dead-letter-exchange": dlx, "x-max-length": 3, "x-message-ttl": 300}
    )
    ch.queue_bind(qb, env.exchange, "b.*")
    for i in range(5):
        publish(ch, env.exchange, "a.error", f"a{i}", **{"x-test": f"h{i}"})
    for i in range(5):
        publish(ch, env.exchange, "b.warn", f"b{i}")
    for _ in range(5):
        msg = ch.basic_get(qa)
        ch.basic_reject(msg.delivery_tag, requeue=False)
    time.sleep(1.5)  # b's survivors expire
    ch.queue_delete(qb)
    ch.queue_declare(qb, durable=True)
    ch.queue_bind(qb, env.exchange, "b.*")
    dlq = f"{env.exchange}.dlq"
    deadline = time.time() + 10
    while depth(ch, dlq) < 10 and time.time() < deadline:
        time.sleep(0.2)
    assert depth(ch, dlq) == 10
    conn.close()
    return {"a": qa, "b": qb, "dlq": dlq}


def reject(ch: amqp.Channel, queue: str, count: int) -> None:
    """Take ``count`` messages from ``queue`` and reject them: the queue dead-letters them."""
    for _ in range(count):
        msg = ch.basic_get(queue)
        ch.basic_reject(msg.delivery_tag, requeue=False)


def wait_depth(ch: amqp.Channel, queue: str, count: int, timeout: float = 10) -> None:
    """Wait until ``queue`` holds ``count`` messages; fail, saying how many it holds, if it never does."""
    deadline = time.time() + timeout
    while depth(ch, queue) < count:
        if time.time() > deadline:
            pytest.fail(f"{queue} holds {depth(ch, queue)} messages after {timeout:g} s, not {count}")
        time.sleep(0.2)


def declare_consumer_queue(env: Env, queue: str, pattern: str) -> None:
    """Have logctl declare ``queue`` bound by ``pattern``, as consume makes it (quorum, dead-lettering)."""
    args = ["consume", "--queue", queue, "--bind", pattern, "--exit-when-idle", "0.1s", "--sink", "stdout"]
    result = run_logctl(args, env)
    assert result.returncode == 0, result.stderr


def test_dry_run_counts_by_origin_and_reason_and_moves_nothing(env: Env, dead_letters: dict[str, str]) -> None:
    result = run_logctl(["replay", "dlq", "--dry-run", "--output", "json"], env)
    assert result.returncode == 0, result.stderr
    rows = {(r["origin_queue"], r["reason"]): r["count"] for r in map(json.loads, result.stdout.splitlines())}
    assert rows == {
        (dead_letters["a"], "rejected"): 5,
        (dead_letters["b"], "maxlen"): 2,
        (dead_letters["b"], "expired"): 3,
    }
    assert "would move 10" in result.stderr
    conn = connect()
    assert depth(conn.channel(), dead_letters["dlq"]) == 10
    conn.close()


def test_filters_move_only_matches_and_the_rest_stay_in_order(env: Env, dead_letters: dict[str, str]) -> None:
    conn = connect()
    ch = conn.channel()
    before = [m.body for m in _peek(ch, dead_letters["dlq"])]
    result = run_logctl(["replay", "dlq", "--reason", "expired", "--output", "json"], env)
    assert result.returncode == 0, result.stderr
    assert "moved 3" in result.stderr
    assert sorted(m.body for m in drain(ch, dead_letters["b"])) == [b"b2", b"b3", b"b4"]
    left = [m.body for m in drain(ch, dead_letters["dlq"])]
    assert left == [b for b in before if b not in (b"b2", b"b3", b"b4")]
    conn.close()


def _peek(ch: amqp.Channel, queue: str) -> list[amqp.Message]:
    """Read a queue's messages without removing them (unacked, then returned)."""
    msgs = []
    while (msg := ch.basic_get(queue)) is not None:
        msgs.append(msg)
    ch.basic_recover(requeue=True)
    return msgs


def test_replay_restores_bodies_and_headers_to_the_original_queues(env: Env, dead_letters: dict[str, str]) -> None:
    result = run_logctl(["replay", "dlq"], env)
    assert result.returncode == 0, result.stderr
    assert "moved 10, left 0" in result.stderr
    conn = connect()
    ch = conn.channel()
    back_a = drain(ch, dead_letters["a"])
    assert sorted(m.body for m in back_a) == [f"a{i}".encode() for i in range(5)]
    for m in back_a:
        headers = m.properties["application_headers"]
        assert headers["x-test"] == "h" + m.body.decode()[1:]
        assert headers["x-logctl-replays"] == 1
        assert headers["x-death"][0]["reason"] == "rejected"
        assert m.properties["content_type"] == "text/plain"
        assert m.properties["delivery_mode"] == 2
    assert sorted(m.body for m in drain(ch, dead_letters["b"])) == [f"b{i}".encode() for i in range(5)]
    assert depth(ch, dead_letters["dlq"]) == 0
    conn.close()


def test_loop_guard_and_messages_without_x_death_are_left_and_reported(env: Env, dead_letters: dict[str, str]) -> None:
    conn = connect()
    ch = conn.channel()
    ch.confirm_select()
    dlq = dead_letters["dlq"]
    publish(ch, "", dlq, "by-hand")
    publish(ch, "", dlq, "looping", **{"x-logctl-replays": 3})
    result = run_logctl(["replay", "dlq"], env)
    assert result.returncode == 0, result.stderr
    assert "moved 10, left 2" in result.stderr
    assert "max_replays=1" in result.stderr and "no_x_death=1" in result.stderr
    assert sorted(m.body for m in drain(ch, dlq)) == [b"by-hand", b"looping"]
    publish(ch, "", dlq, "by-hand")
    result = run_logctl(["replay", "dlq", "--to-queue", dead_letters["b"]], env)
    assert "moved 1" in result.stderr
    assert [m.body for m in drain(ch, dead_letters["b"])][-1] == b"by-hand"
    conn.close()


def test_replay_killed_midway_then_rerun_loses_nothing(env: Env) -> None:
    qa = env.queue("big")
    declare_consumer_queue(env, qa, "big.*")
    conn = connect()
    ch = conn.channel()
    ch.confirm_select()
    for i in range(3000):
        publish(ch, env.exchange, "big.info", f"m{i}")
    ch.basic_qos(0, 500, False)
    rejected = 0
    while rejected < 3000:
        msg = ch.basic_get(qa)
        ch.basic_reject(msg.delivery_tag, requeue=False)
        rejected += 1
    dlq = f"{env.exchange}.dlq"
    deadline = time.time() + 15
    while depth(ch, dlq) < 3000 and time.time() < deadline:
        time.sleep(0.2)
    proc = start_logctl(["replay", "dlq"], env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while depth(ch, dlq) > 2900 and time.time() < deadline:
        time.sleep(0.01)
    proc.kill()  # mid-way: some moved and acked, some published and not yet acked
    proc.wait()
    left = depth(ch, dlq)
    assert 0 < left < 3000, left
    assert run_logctl(["replay", "dlq"], env).returncode == 0
    bodies = [m.body for m in drain(ch, qa)]
    assert set(bodies) == {f"m{i}".encode() for i in range(3000)}  # every one back (a few may come twice)
    assert depth(ch, dlq) == 0
    conn.close()


def test_unknown_queue_is_exit_5(env: Env) -> None:
    result = run_logctl(["replay", "no-such-queue"], env)
    assert result.returncode == 5
    assert "does not exist" in result.stderr


def test_replay_returns_messages_only_to_the_queue_that_rejected_them(env: Env) -> None:
    """Two queues (and logctl's default queue) take the same key; only one rejects."""
    rejecter, bystander = env.queue("rejecter"), env.queue("bystander")
    declare_consumer_queue(env, rejecter, "shared.*")
    declare_consumer_queue(env, bystander, "shared.*")
    conn = connect()
    ch = conn.channel()
    ch.confirm_select()
    for i in range(50):
        publish(ch, env.exchange, "shared.error", f"s{i}")
    reject(ch, rejecter, 50)
    dlq, default = f"{env.exchange}.dlq", f"{env.exchange}.default"
    wait_depth(ch, dlq, 50)
    before = {q: depth(ch, q) for q in (rejecter, bystander, default)}
    assert before == {rejecter: 0, bystander: 50, default: 50}
    result = run_logctl(["replay", "dlq"], env)
    assert result.returncode == 0, result.stderr
    assert "moved 50, left 0" in result.stderr
    assert {q: depth(ch, q) for q in before} == {rejecter: 50, bystander: 50, default: 50}
    assert sorted(m.body for m in drain(ch, rejecter)) == sorted(f"s{i}".encode() for i in range(50))
    conn.close()


def test_a_message_whose_origin_queue_is_gone_stays_in_the_dead_letter_queue(env: Env) -> None:
    gone, kept = env.queue("gone"), env.queue("kept")
    declare_consumer_queue(env, gone, "gone.*")
    declare_consumer_queue(env, kept, "kept.*")
    conn = connect()
    ch = conn.channel()
    ch.confirm_select()
    for i in range(3):
        publish(ch, env.exchange, "gone.info", f"g{i}")
        publish(ch, env.exchange, "kept.info", f"k{i}")
    reject(ch, gone, 3)
    reject(ch, kept, 3)
    dlq = f"{env.exchange}.dlq"
    wait_depth(ch, dlq, 6)
    ch.queue_delete(gone)
    result = run_logctl(["replay", "dlq", "--output", "json"], env)
    assert result.returncode == 0, result.stderr
    assert "moved 3, left 3" in result.stderr and "unroutable=3" in result.stderr
    rows = {(r["origin_queue"], r["outcome"]): r["count"] for r in map(json.loads, result.stdout.splitlines())}
    assert rows == {(gone, "unroutable"): 3, (kept, "moved"): 3}
    assert sorted(m.body for m in drain(ch, dlq)) == [b"g0", b"g1", b"g2"]
    assert sorted(m.body for m in drain(ch, kept)) == [b"k0", b"k1", b"k2"]
    conn.close()


def test_to_exchange_still_reroutes_by_routing_key(env: Env, dead_letters: dict[str, str]) -> None:
    result = run_logctl(["replay", "dlq", "--reason", "rejected", "--to-exchange", env.exchange], env)
    assert result.returncode == 0, result.stderr
    assert "moved 5" in result.stderr
    conn = connect()
    ch = conn.channel()
    assert depth(ch, dead_letters["a"]) == 5  # bound by a.*
    assert depth(ch, f"{env.exchange}.default") == 5 + 5 + 5  # the originals of a and b, and the re-routed
    conn.close()
