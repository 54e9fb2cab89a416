"""Node loss in a three-node cluster while ship publishes and consume drains: nothing lost, nothing doubled.

ship follows a file a writer appends to at a steady rate; consume stores into SQLite;
both were given the three nodes' failover URL. Mid-way a node goes: the quorum queue's
leader killed, a classic mirrored queue's master killed, or the node both are connected
to frozen past the heartbeat. Then every line is counted in the sink.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cluster.conftest import NODES, Cluster, wait_for
from tests.conftest import Env, run_logctl, sink_messages, start_logctl
from tests.fault.test_ship_faults import start_ship, wait_caught_up
from tests.numbered import NumberedWriter, assert_exactly_once, sequence_numbers

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


def stored_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("select count(*) from records").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not there yet
        return 0


def stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err.decode()
    return err.decode()


def ship_and_consume_through(
    env: Env, tmp_path: Path, fault: Callable[[], None], consume_args: tuple[str, ...] = ()
) -> tuple[str, str]:
    """Ship and consume run while ``fault`` happens; returns their stderr once every line was counted."""
    log, db = tmp_path / "app.log", tmp_path / "sink.db"
    log.touch()
    consume = start_logctl(["consume", "--sink", f"sqlite:///{db}", *consume_args], env)
    writer = NumberedWriter(log, rate_per_s=2000)
    writer.start()
    ship = start_ship(env, str(log))
    wait_for(lambda: stored_count(db) > 2000, 60, "the first records in the sink")
    fault()
    time.sleep(3)
    written = writer.stop()
    wait_caught_up(env, log, timeout=120)
    wait_for(lambda: stored_count(db) >= written, 120, f"{written} records in the sink")
    time.sleep(2)  # a redelivery that would double a record has its chance
    ship_err, consume_err = stop(ship), stop(consume)
    assert_exactly_once(sequence_numbers(sink_messages(db)), written)
    return ship_err, consume_err


def test_killing_the_quorum_leader_loses_and_doubles_nothing(
    cluster: Cluster, cluster_env: Env, tmp_path: Path
) -> None:
    queue = f"{cluster_env.exchange}.default"

    def kill_leader() -> None:
        leader = cluster.leader(queue)
        assert leader is not None
        cluster.kill(leader)
        # a new leader is elected among the two that are left
        wait_for(lambda: cluster.leader(queue) not in (leader, None), 60, "a new leader")

    ship_err, consume_err = ship_and_consume_through(cluster_env, tmp_path, kill_leader)
    assert "reconnect" in ship_err + consume_err  # they were on the leader (node 1, listed first)


def test_losing_the_master_of_a_mirrored_classic_queue_loses_and_doubles_nothing(
    cluster: Cluster, cluster_env: Env, tmp_path: Path
) -> None:
    cluster_env["LOGCTL_DEFAULT_QUEUE"] = "none"
    queue = cluster_env.queue("mirrored")
    applied = run_logctl(["policy", "apply", "ha-log", "--set", "ha-params=3"], cluster_env)
    assert applied.returncode == 0, applied.stderr
    # a classic queue of its own, bound to everything: declared by a consume that leaves at once
    declare = ["consume", "--queue", queue, "--queue-type", "classic", "--bind", "#", "--exit-when-idle", "1s"]
    declared = run_logctl([*declare, "--sink", f"sqlite:///{tmp_path / 'declare.db'}"], cluster_env)
    assert declared.returncode == 0, declared.stderr

    def mirrors_synchronised() -> bool:
        info = cluster.queue(queue)
        others = {f"n{n}@localhost" for n in NODES} - {info.get("node")}
        return (
            info.get("policy") == "ha-log"  # the management API's view lags the queue's by a few seconds
            and set(info.get("slave_nodes") or []) == others
            and set(info.get("synchronised_slave_nodes") or []) == others
        )

    wait_for(mirrors_synchronised, 60, "ha-log's mirrors on the two other nodes, synchronised")

    def kill_master() -> None:
        master = cluster.leader(queue)
        assert master is not None
        cluster.kill(master)
        wait_for(lambda: cluster.leader(queue) not in (master, None), 60, "a mirror promoted")

    try:
        ship_and_consume_through(cluster_env, tmp_path, kill_master, ("--queue", queue))
    finally:
        run_logctl(["policy", "delete", "ha-log"], cluster_env)


def test_a_node_frozen_past_the_heartbeat_is_left_and_nothing_is_lost(
    cluster: Cluster, cluster_env: Env, tmp_path: Path
) -> None:
    def freeze_first_node() -> None:
        cluster.freeze(1)  # where ship and consume are connected (listed first), and the queue's leader
        time.sleep(12)  # heartbeat 2 s: both notice within ~4 s and carry on elsewhere
        cluster.thaw(1)

    ship_err, consume_err = ship_and_consume_through(cluster_env, tmp_path, freeze_first_node)
    assert "failover" in ship_err and "failover" in consume_err
