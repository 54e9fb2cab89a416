"""A three-node RabbitMQ cluster (scripts/cluster) for the whole test session, and its helpers.

One cluster per session: it takes about 30 s to form. Each test gets all three nodes
running again (``cluster`` restarts or thaws what an earlier test took away), its own
exchange and state dir, and a URL that lists all three nodes.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Env

SCRIPT = REPO / "scripts" / "cluster"
NODES = (1, 2, 3)


def amqp_port(node: int) -> int:
    return 5700 + node


def management_port(node: int) -> int:
    return 15700 + node


def cluster_cmd(*args: str, timeout: float = 240) -> str:
    result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"scripts/cluster {' '.join(args)}: {result.stderr}"
    return result.stdout


def node_of(name: str) -> int:
    """1 for ``n1@localhost``."""
    return int(name.split("@")[0].removeprefix("n"))


class Cluster:
    """The session's cluster, as the tests see it."""

    def __init__(self) -> None:
        self.url = cluster_cmd("url").strip()
        self.down: set[int] = set()
        self.frozen: set[int] = set()

    def kill(self, node: int) -> None:
        cluster_cmd("kill", str(node))
        self.down.add(node)

    def start(self, node: int) -> None:
        cluster_cmd("start", str(node))
        self.down.discard(node)

    def freeze(self, node: int) -> None:
        cluster_cmd("freeze", str(node))
        self.frozen.add(node)

    def thaw(self, node: int) -> None:
        cluster_cmd("thaw", str(node))
        self.frozen.discard(node)

    def heal(self) -> None:
        """All three nodes running and in the cluster again."""
        for node in sorted(self.frozen):
            self.thaw(node)
        for node in sorted(self.down):
            self.start(node)
        cluster_cmd("ctl", "1", "--timeout", "120", "await_online_nodes", "3")

    def live_node(self) -> int:
        return next(n for n in NODES if n not in self.down | self.frozen)

    def api(self, method: str, path: str, body: object | None = None, node: int | None = None) -> Any:
        """The management API of ``node`` (a live one by default), as guest."""
        port = management_port(node or self.live_node())
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"},
        )
        request.add_header("Authorization", "Basic " + base64.b64encode(b"guest:guest").decode())
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def queue(self, name: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/queues/%2F/{urllib.parse.quote(name, safe='')}"))

    def leader(self, queue: str) -> int | None:
        """The node that leads ``queue`` (a quorum queue's leader, a classic queue's master); None during an election."""
        info = self.queue(queue)
        name = info.get("leader") or info.get("node")
        return node_of(str(name)) if name else None

    def delete_topology(self, exchange: str, queues: list[str]) -> None:
        for q in [f"{exchange}.default", f"{exchange}.unrouted", f"{exchange}.dlq", *queues]:
            self._delete(f"/api/queues/%2F/{urllib.parse.quote(q, safe='')}")
        for ex in [exchange, f"{exchange}.unrouted", f"{exchange}.dlx"]:
            self._delete(f"/api/exchanges/%2F/{urllib.parse.quote(ex, safe='')}")

    def _delete(self, path: str) -> None:
        try:
            self.api("DELETE", path)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise


@pytest.fixture(scope="session")
def cluster_session() -> Iterator[Cluster]:
    """The cluster, started for the session (and stopped after) unless it was already up."""
    was_up = "running" in cluster_cmd("status")
    cluster_cmd("up", timeout=600)
    try:
        yield Cluster()
    finally:
        if not was_up:
            cluster_cmd("down", "--purge", timeout=300)


@pytest.fixture
def cluster(cluster_session: Cluster) -> Iterator[Cluster]:
    cluster_session.heal()
    yield cluster_session
    cluster_session.heal()


@pytest.fixture
def cluster_env(cluster: Cluster, tmp_path: Path) -> Iterator[Env]:
    """Env for logctl against all three nodes: its own exchange, state dir, a short heartbeat."""
    exchange = f"c-{uuid.uuid4().hex[:10]}"
    e = Env(
        LOGCTL_URL=cluster.url,
        LOGCTL_EXCHANGE=exchange,
        LOGCTL_STATE_DIR=str(tmp_path / "state"),
        LOGCTL_CONFIG=str(tmp_path / "absent.toml"),
        LOGCTL_MANAGEMENT_URL=f"http://guest:guest@127.0.0.1:{management_port(1)}",
        LOGCTL_HEARTBEAT="2",  # a frozen node is given up after ~4 s, not ~20
        LOGCTL_CONNECT_TIMEOUT="2",
        LOGCTL_CONNECT_RETRIES="10",
        NO_COLOR="1",
    )
    e.exchange = exchange
    e.state_dir = tmp_path / "state"
    e.extra_queues = []
    yield e
    cluster.heal()
    cluster.delete_topology(exchange, e.extra_queues)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
