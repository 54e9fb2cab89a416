"""A PostgreSQL of the test's own that wants a password (the machine's trusts every login).

consume with a wrong password: one line, exit 8, nothing acked (the records stay in the
queue); with the right one the same records are stored, each once.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Env, run_logctl

pytestmark = [pytest.mark.integration, pytest.mark.fault]

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:] or [""]
PASSWORD = "s3cret-for-logctl"


def _as_postgres(*args: str) -> None:
    # initdb refuses to run as root; the Debian packages' postgres user owns the data dir
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def password_pg() -> Iterator[int]:
    if not BIN[0]:
        pytest.fail("no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="logctl-pg-"))
    (base / "pw").write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(base / "pw", "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    data = base / "data"
    _as_postgres(
        f"{BIN[0]}/initdb", "-D", str(data), "-U", "postgres", "-A", "scram-sha-256", f"--pwfile={base / 'pw'}"
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    _as_postgres(f"{BIN[0]}/pg_ctl", "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start")
    try:
        yield port
    finally:
        _as_postgres(f"{BIN[0]}/pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_a_wrong_password_is_one_line_exit_8_and_nothing_is_acked(env: Env, password_pg: int, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("".join(f'level=info msg="line {i}"\n' for i in range(50)))
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    wrong = f"postgresql://postgres:wrong@127.0.0.1:{password_pg}/postgres"
    refused = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", wrong], env)
    assert refused.returncode == 8, refused.stderr
    assert "refused the login" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert "wrong" not in refused.stderr  # never the password
    right = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{password_pg}/postgres"
    stored = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", right], env)
    assert stored.returncode == 0, stored.stderr
    assert "stored=50" in stored.stderr, stored.stderr  # all were still in the queue
