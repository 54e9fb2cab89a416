"""tail, replay and bench on a failover URL: the node they use dies and they carry on on another."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import amqp
import pytest

from tests.cluster.conftest import Cluster, amqp_port, wait_for
from tests.conftest import Env, run_logctl, start_logctl

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def connect(node: int) -> amqp.Connection:
    conn = amqp.Connection(f"127.0.0.1:{amqp_port(node)}", userid="guest", password="guest")
    conn.connect()
    return conn


def test_tail_moves_to_another_node_when_its_node_dies(cluster: Cluster, cluster_env: Env, tmp_path: Path) -> None:
    tail = start_logctl(["tail", "--output", "json"], cluster_env, stdout=subprocess.PIPE, text=True)
    seen: list[str] = []
    reader = threading.Thread(
        target=lambda: seen.extend(json.loads(line)["message"] for line in tail.stdout), daemon=True
    )  # type: ignore[union-attr]
    reader.start()

    attempts = iter(range(1000))

    def ship(text: str) -> None:
        log = tmp_path / f"{next(attempts)}.log"  # a new file each time: one shipped already is not shipped again
        log.write_text(f"{text}\n")
        shipped = run_logctl(["ship", "--no-follow", str(log)], cluster_env)
        assert shipped.returncode == 0, shipped.stderr

    try:
        wait_for(lambda: (ship("before"), "before" in seen)[1], 60, "tail to show a record")
        cluster.kill(1)  # tail was connected to node 1, listed first
        wait_for(lambda: (ship("after"), "after" in seen)[1], 90, "tail to show a record shipped after node 1 died")
    finally:
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=30)
    assert "reconnected" in err and "failover" in err, err


def _dead_letter(cluster_env: Env, queue: str, count: int) -> None:
    """``count`` messages dead-lettered (expired) from ``queue``, which then takes them back without a TTL."""
    conn = connect(1)
    ch = conn.channel()
    ch.confirm_select()
    dlx = f"{cluster_env.exchange}.dlx"
    ch.queue_declare(
        queue, durable=True, auto_delete=False, arguments={"x-dead-letter-exchange": dlx, "x-message-ttl": 1}
    )
    for i in range(count):
        ch.basic_publish(amqp.Message(f"m{i}".encode(), delivery_mode=2), exchange="", routing_key=queue)
    dlq = f"{cluster_env.exchange}.dlq"
    wait_for(lambda: int(ch.queue_declare(dlq, passive=True)[1]) >= count, 120, f"{count} messages in {dlq}")
    ch.queue_delete(queue)
    ch.queue_declare(queue, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
    conn.close()


def test_replay_fails_over_and_every_message_gets_back(cluster: Cluster, cluster_env: Env) -> None:
    count = 20_000
    declared = run_logctl(["consume", "--exit-when-idle", "0.1s", "--sink", "stdout"], cluster_env)
    assert declared.returncode == 0, declared.stderr  # the default topology, its dead-letter queue led by node 1
    origin = cluster_env.queue("origin")
    _dead_letter(cluster_env, origin, count)
    dlq = f"{cluster_env.exchange}.dlq"
    assert cluster.leader(dlq) == 1
    replay = start_logctl(["replay", "dlq"], cluster_env, text=True)
    wait_for(lambda: cluster.queue(origin).get("messages", 0) > 0 or replay.poll() is not None, 60, "replay to move")
    cluster.kill(1)
    _, err = replay.communicate(timeout=300)
    assert replay.returncode == 0, err
    assert "replaying the rest" in err, err  # it did lose its node mid-way
    conn = connect(2)
    ch = conn.channel()
    bodies = set()
    while (msg := ch.basic_get(origin, no_ack=True)) is not None:
        bodies.add(msg.body)
    assert bodies == {f"m{i}".encode() for i in range(count)}  # every one back (a few may come twice)
    assert int(ch.queue_declare(dlq, passive=True)[1]) == 0
    conn.close()


def test_bench_carries_on_when_its_node_dies(cluster: Cluster, cluster_env: Env) -> None:
    # at a rate that leaves the three nodes' two cores time to answer heartbeats
    args = ["bench", "publish", "--duration", "12s", "--rate", "200", "--queue-type", "quorum", "--output", "json"]
    bench = start_logctl(args, cluster_env, stdout=subprocess.PIPE, text=True)
    time.sleep(4)
    cluster.kill(1)
    out, err = bench.communicate(timeout=120)
    assert bench.returncode == 0, err
    assert "failover" in err, err
    assert json.loads(out.splitlines()[-1])["messages"] > 0
