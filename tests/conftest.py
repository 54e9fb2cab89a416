"""Shared fixtures. Integration tests use the real RabbitMQ (LOGCTL_TEST_URL, default local)."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import amqp
import pytest

BROKER_URL = os.environ.get("LOGCTL_TEST_URL", "amqp://guest:guest@localhost:5672//")
REPO = Path(__file__).resolve().parent.parent


def amqp_connect(url: str = BROKER_URL) -> amqp.Connection:
    """A plain py-amqp connection (a client that is not logctl) to the test broker."""
    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    conn = amqp.Connection(
        f"{parts.hostname or 'localhost'}:{parts.port or 5672}",
        userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtual_host=vhost,
    )
    conn.connect()
    return conn


def management(method: str, path: str, body: object | None = None) -> Any:
    """Call the test broker's management API (port 15672 of its host) as its admin user."""
    parts = urlsplit(BROKER_URL)
    request = urllib.request.Request(
        f"http://{parts.hostname or 'localhost'}:15672{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json"},
    )
    token = base64.b64encode(f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def with_login(url: str, user: str, password: str) -> str:
    """``url`` with another user and password."""
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return urlunsplit(parts._replace(netloc=f"{quote(user)}:{quote(password)}@{host}"))


def _delete_topology(exchange: str, queues: list[str]) -> None:
    conn = amqp_connect()
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


def start_logctl(
    args: list[str],
    env: dict[str, str],
    *,
    stdin: int | None = None,
    stdout: int | None = subprocess.DEVNULL,
    stderr: int | None = subprocess.PIPE,
    text: bool = False,
) -> subprocess.Popen[Any]:
    """Start ``python -m logctl`` in the background (to kill, signal or feed it), as a user would."""
    return subprocess.Popen(
        [sys.executable, "-m", "logctl", *args],
        env={**os.environ, **env},
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        text=text,
    )


def sink_messages(sink: str | Path) -> list[str]:
    """The messages a sink holds: ``sqlite:///PATH`` (or a .db path) or ``file://PATH`` (whole lines only)."""
    text = str(sink)
    path = Path(text.split("://", 1)[1]) if "://" in text else Path(text)
    if not path.exists():
        return []
    if not text.startswith("file://"):
        with sqlite3.connect(path) as conn:
            return [m for (m,) in conn.execute("select message from records order by id")]
    whole = path.read_bytes().rpartition(b"\n")[0]  # a line being written is not stored yet
    return [json.loads(line)["message"] for line in whole.splitlines()]


def self_signed(where: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl (it is its own CA)."""
    cert, key = where / f"{name}.pem", where / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
