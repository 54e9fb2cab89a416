"""A second broker on another port, beside the system's: management commands never act on the wrong one.

The management URL is derived from the AMQP URL's host (port 15672), which on this host is
the system broker's API, not that of the broker on the test's own port: every command
that reads or changes something through the API must notice and refuse (#25 item 2).
"""

from __future__ import annotations

import amqp
import pytest
from pytest_rabbitmq.factories.executor import RabbitMqExecutor

from tests.conftest import Env, run_logctl

pytestmark = [pytest.mark.integration, pytest.mark.fault]


@pytest.mark.parametrize(
    "args",
    [["queue", "list"], ["top", "--once"], ["policy", "apply", "quorum-log", "--dry-run"], ["policy", "list"]],
)
def test_a_derived_management_url_of_another_broker_is_refused(own_env: Env, args: list[str]) -> None:
    result = run_logctl(args, own_env)
    assert result.returncode == 3, result.stderr
    (line,) = result.stderr.splitlines()
    port = own_env["LOGCTL_URL"].rsplit(":", 1)[1].strip("/")
    assert "the management API at http://127.0.0.1:15672 belongs to another broker" in line
    assert "(cluster 'rabbit@" in line and "AMQP on port 5672" in line
    assert line.endswith(
        f"set --management-url (or LOGCTL_MANAGEMENT_URL) to the management API of the broker at 127.0.0.1:{port}"
    )


def test_a_management_url_set_by_hand_is_checked_too(own_env: Env) -> None:
    own_env["LOGCTL_MANAGEMENT_URL"] = "http://guest:guest@127.0.0.1:15672"
    result = run_logctl(["policy", "list"], own_env)
    assert result.returncode == 3, result.stderr
    assert "belongs to another broker" in result.stderr


def test_config_show_prints_the_management_url_it_resolved(own_env: Env) -> None:
    result = run_logctl(["config", "show", "--output", "json"], own_env)
    assert result.returncode == 0, result.stderr
    assert (
        '{"key":"management_url","value":"http://guest:****@127.0.0.1:15672","source":"derived from url'
        in result.stdout
    )


def test_consume_does_not_trust_another_brokers_dead_letter_settings(
    own_env: Env, own_broker: RabbitMqExecutor, tmp_path: object
) -> None:
    conn = amqp.Connection(f"127.0.0.1:{own_broker.port}", userid="guest", password="guest")
    conn.connect()
    conn.channel().queue_declare("plain", durable=True, auto_delete=False)  # someone else's queue
    conn.close()
    result = run_logctl(["consume", "--queue", "plain", "--exit-when-idle", "0.5s", "--sink", "stdout"], own_env)
    assert result.returncode == 0, result.stderr
    said = "queue 'plain' cannot dead-letter: its dead-letter settings cannot be read (the management API at"
    assert said in result.stderr and "belongs to another broker" in result.stderr


def test_the_system_broker_is_its_own_managements(env: Env) -> None:
    result = run_logctl(["queue", "list"], env)
    assert result.returncode == 0, result.stderr
