"""Fixtures for fault tests: a RabbitMQ broker of the tests' own, which they may stop and restart."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from pytest_rabbitmq import factories
from pytest_rabbitmq.factories.executor import RabbitMqExecutor

from tests.conftest import Env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _make_certificates(where: Path) -> None:
    """A CA, a server and a client certificate it signed (for 127.0.0.1), and an unrelated CA."""
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=logctl test {ca}",
                 "-keyout", str(where / f"{ca}.key"), "-out", str(where / f"{ca}.pem"))  # fmt: skip
    for name, extra in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(where / f"{name}.key"),
                 "-out", str(where / f"{name}.csr"))  # fmt: skip
        (where / f"{name}.ext").write_text(extra + "\n")
        _openssl("x509", "-req", "-in", str(where / f"{name}.csr"), "-CA", str(where / "ca.pem"), "-CAkey",
                 str(where / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(where / f"{name}.ext"),
                 "-out", str(where / f"{name}.pem"))  # fmt: skip


# The machine's /etc/rabbitmq/rabbitmq.conf pins the listener to 5672; the test's own
# broker takes a config of its own so that RABBITMQ_NODE_PORT (set by pytest-rabbitmq)
# rules, and listens for TLS too, with certificates made here.
TLS_DIR = Path(tempfile.mkdtemp(prefix="logctl-rabbit-"))
TLS_PORT = _free_port()
_make_certificates(TLS_DIR)
_config = TLS_DIR / "rabbitmq.conf"
_config.write_text(
    "# private test broker: listener port from RABBITMQ_NODE_PORT, and a TLS listener\n"
    f"listeners.ssl.default = {TLS_PORT}\n"
    f"ssl_options.cacertfile = {TLS_DIR / 'ca.pem'}\n"
    f"ssl_options.certfile = {TLS_DIR / 'server.pem'}\n"
    f"ssl_options.keyfile = {TLS_DIR / 'server.key'}\n"
    "ssl_options.verify = verify_peer\n"
    "ssl_options.fail_if_no_peer_cert = false\n"
)
os.environ["RABBITMQ_CONFIG_FILE"] = str(_config)

own_broker = factories.rabbitmq_proc(port=None)


@pytest.fixture
def own_env(env: Env, own_broker: RabbitMqExecutor) -> Env:
    env["LOGCTL_URL"] = f"amqp://guest:guest@127.0.0.1:{own_broker.port}//"
    env["LOGCTL_CONNECT_RETRIES"] = "10"
    return env


@pytest.fixture
def tls_env(own_env: Env) -> Env:
    """own_env over TLS: amqps:// to the own broker's TLS listener."""
    own_env["LOGCTL_URL"] = f"amqps://guest:guest@127.0.0.1:{TLS_PORT}//"
    return own_env
