"""Fixtures for fault tests: a RabbitMQ broker of the tests' own, which they may stop and restart."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from pytest_rabbitmq import factories
from pytest_rabbitmq.factories.executor import RabbitMqExecutor

from tests.conftest import Env

# The machine's /etc/rabbitmq/rabbitmq.conf pins the listener to 5672; the test's own
# broker takes an empty config so that RABBITMQ_NODE_PORT (set by pytest-rabbitmq) rules.
_config = Path(tempfile.mkdtemp(prefix="logctl-rabbit-")) / "rabbitmq.conf"
_config.write_text("# private test broker: listener port from RABBITMQ_NODE_PORT\n")
os.environ["RABBITMQ_CONFIG_FILE"] = str(_config)

own_broker = factories.rabbitmq_proc(port=None)


@pytest.fixture
def own_env(env: Env, own_broker: RabbitMqExecutor) -> Env:
    env["LOGCTL_URL"] = f"amqp://guest:guest@127.0.0.1:{own_broker.port}//"
    env["LOGCTL_CONNECT_RETRIES"] = "10"
    return env
