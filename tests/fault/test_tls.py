"""TLS against the test broker's own TLS listener, with a CA the tests make (see conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Env, run_logctl, sink_messages
from tests.fault.conftest import TLS_DIR
from tests.numbered import assert_exactly_once, numbered, sequence_numbers

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def test_ship_and_consume_over_amqps_with_the_brokers_ca(tls_env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 500))
    ca = ["--ca-file", str(TLS_DIR / "ca.pem")]
    shipped = run_logctl([*ca, "ship", "--no-follow", str(log)], tls_env)
    assert shipped.returncode == 0, shipped.stderr
    db = tmp_path / "out.db"
    tls_env["LOGCTL_CA_FILE"] = str(TLS_DIR / "ca.pem")  # the environment works as the flag does
    consumed = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], tls_env)
    assert consumed.returncode == 0, consumed.stderr
    assert_exactly_once(sequence_numbers(sink_messages(db)), 500)


def test_a_client_certificate_is_presented(tls_env: Env, tmp_path: Path) -> None:
    args = ["--ca-file", str(TLS_DIR / "ca.pem"), "--cert-file", str(TLS_DIR / "client.pem")]
    args += ["--key-file", str(TLS_DIR / "client.key")]
    result = run_logctl([*args, "consume", "--exit-when-idle", "0.2s", "--sink", "stdout"], tls_env)
    assert result.returncode == 0, result.stderr


def test_a_wrong_ca_fails_with_one_line_that_says_so(tls_env: Env) -> None:
    tls_env["LOGCTL_CONNECT_RETRIES"] = "0"
    result = run_logctl(["--ca-file", str(TLS_DIR / "other-ca.pem"), "consume", "--exit-when-idle", "0.2s"], tls_env)
    assert result.returncode == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "certificate is not trusted" in lines[0] and "--ca-file" in lines[0], lines
    assert "Traceback" not in result.stderr


def test_insecure_skips_the_check_only_when_asked(tls_env: Env) -> None:
    tls_env["LOGCTL_CONNECT_RETRIES"] = "0"
    checked = run_logctl(["consume", "--exit-when-idle", "0.2s", "--sink", "stdout"], tls_env)
    assert checked.returncode == 4 and "not trusted" in checked.stderr  # the system's CAs do not know ours
    insecure = run_logctl(["--insecure", "consume", "--exit-when-idle", "0.2s", "--sink", "stdout"], tls_env)
    assert insecure.returncode == 0, insecure.stderr
