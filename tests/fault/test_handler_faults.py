"""LogctlHandler while its broker is away: emit never blocks (a bound of 50 ms, measured
as the application sees it), a full buffer drops (or spills) and counts, and what was
buffered is shipped once the broker is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pytest_rabbitmq.factories.executor import RabbitMqExecutor

from tests.conftest import Env, run_logctl, sink_messages

pytestmark = [pytest.mark.integration, pytest.mark.fault]
EMIT_BOUND_S = 0.05

APP = """
import json, logging, sys, time
from logctl.handler import LogctlHandler

handler = LogctlHandler(service="app", capacity=100, overflow=sys.argv[1], spill_path=sys.argv[2], flush_timeout=60)
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.addHandler(handler)

def say(**what):
    print(json.dumps(what), flush=True)

for i in range(10):
    log.info("before %d", i)
say(flushed=handler.drain(30))
sys.stdin.readline()  # the test stops the broker
slowest = 0.0
for i in range(1000):
    started = time.perf_counter()
    log.info("during %d", i)
    slowest = max(slowest, time.perf_counter() - started)
say(slowest=slowest, dropped=handler.dropped, spilled=handler.spilled)
sys.stdin.readline()  # the test starts the broker again
say(flushed=handler.drain(90))
"""


def _start_app(env: Env, overflow: str, spill: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(APP), overflow, str(spill)],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _say(app: subprocess.Popen[str]) -> dict[str, object]:
    assert app.stdout is not None
    line = app.stdout.readline()
    assert line, app.stderr.read() if app.stderr else ""
    return dict(json.loads(line))


@pytest.mark.parametrize("overflow", ["drop-newest", "spill"])
def test_a_broker_outage_while_logging_never_blocks_and_loses_only_what_it_counts(
    own_env: Env, own_broker: RabbitMqExecutor, tmp_path: Path, overflow: str
) -> None:
    spill = tmp_path / "spill.jsonl"
    app = _start_app(own_env, overflow, spill)
    assert app.stdin is not None
    try:
        assert _say(app) == {"flushed": True}
        own_broker.stop()
        app.stdin.write("go\n")
        app.stdin.flush()
        during = _say(app)
        own_broker.start()
        app.stdin.write("go\n")
        app.stdin.flush()
        assert _say(app) == {"flushed": True}
        app.stdin.close()
        assert app.wait(timeout=60) == 0
    finally:
        if app.poll() is None:
            app.kill()
    assert float(during["slowest"]) < EMIT_BOUND_S, during  # type: ignore[arg-type]
    db = tmp_path / "out.db"
    assert run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], own_env).returncode == 0
    shipped = sink_messages(db)
    assert len(shipped) == len(set(shipped))
    before = {m for m in shipped if m.startswith("before")}
    assert before == {f"before {i}" for i in range(10)}
    buffered = sorted(int(m.split()[1]) for m in shipped if m.startswith("during"))
    if overflow == "drop-newest":
        assert during["dropped"] == 1000 - len(buffered) and during["spilled"] == 0, (during, len(buffered))
        # The first were kept; the newest were dropped while the buffer was full (room came back as
        # the feeder handed records to the delivery unit, so later ones got in too).
        assert buffered[:100] == list(range(100))
        assert 90 <= len(buffered) <= 100 + 64 * 1024  # the buffer, and what the delivery unit held
    else:
        assert during["dropped"] == 0
        spilled = [json.loads(line) for line in spill.read_text().splitlines()]
        assert len(spilled) == during["spilled"] == 1000 - len(buffered)
        shipped_again = run_logctl(["ship", "--no-follow", str(spill)], own_env)  # as the README says
        assert shipped_again.returncode == 0, shipped_again.stderr
        assert run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], own_env).returncode == 0
        during_all = sorted(int(m.split()[1]) for m in sink_messages(db) if m.startswith("during"))
        assert during_all == list(range(1000))  # nothing lost: buffered or spilled, each once
