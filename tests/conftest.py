"""Shared fixtures. Integration tests use the real RabbitMQ (LOGCTL_TEST_URL, default local)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import amqp
import pytest

BROKER_URL = os.environ.get("LOGCTL_TEST_URL", "amqp://guest:guest@localhost:5672//")
REPO = Path(__file__).resolve().parent.parent


def _delete_topology(exchange: str, queues: list[str]) -> None:
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    try:
        ch = conn.channel()
        for q in [f"{exchange}.default", f"{exchange}.unrouted", f"{exchange}.dlq", *queues]:
            ch.queue_delete(q)
        for ex in [exchange, f"{exchange}.unrouted", f"{exchange}.dlx"]:
            ch.exchange_delete(ex)
    finally:
        conn.close()


class Env(dict[str, str]):
    """Environment for one test's logctl runs: its own exchange and state dir."""

    exchange: str
    state_dir: Path
    extra_queues: list[str]

    def queue(self, suffix: str) -> str:
        name = f"{self.exchange}.{suffix}"
        self.extra_queues.append(name)
        return name


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A unique exchange (and its queues, removed afterwards) and a fresh state dir."""
    exchange = f"t-{uuid.uuid4().hex[:10]}"
    e = Env(
        LOGCTL_URL=BROKER_URL,
        LOGCTL_EXCHANGE=exchange,
        LOGCTL_STATE_DIR=str(tmp_path / "state"),
        LOGCTL_CONFIG=str(tmp_path / "absent.toml"),
        NO_COLOR="1",
    )
    e.exchange = exchange
    e.state_dir = tmp_path / "state"
    e.extra_queues = []
    yield e
    _delete_topology(exchange, e.extra_queues)


def run_logctl(
    args: list[str], env: dict[str, str], timeout: float = 120, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m logctl`` as a separate process, as a user would."""
    full_env = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, "-m", "logctl", *args], env=full_env, capture_output=True, text=True, timeout=timeout, **kw
    )  # type: ignore[call-overload]
