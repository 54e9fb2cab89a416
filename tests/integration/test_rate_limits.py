"""--max-rate on ship and consume: smoothed to the rate over a few seconds, nothing dropped.

The rate is a ceiling the token bucket guarantees, so the lower bound on the time taken
is tight; the upper bound is loose (a busy machine may be slower than the rate).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.conftest import Env, run_logctl, sink_messages
from tests.numbered import assert_exactly_once, numbered, sequence_numbers

pytestmark = pytest.mark.integration


def test_ship_max_rate_reads_no_faster_than_the_rate_and_ships_every_line(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 6000))
    started = time.monotonic()
    result = run_logctl(["ship", "--no-follow", "--max-rate", "2000", str(log)], env)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert 2.7 <= took <= 15, took  # 6,000 lines at 2,000/s, less the burst (a tenth of a second)
    db = tmp_path / "out.db"
    consumed = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert consumed.returncode == 0, consumed.stderr
    assert_exactly_once(sequence_numbers(sink_messages(db)), 6000)


def test_consume_max_rate_stores_no_faster_than_the_rate_and_stores_every_record(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 3000))
    assert run_logctl(["ship", "--no-follow", "--batch-size", "100", str(log)], env).returncode == 0
    db = tmp_path / "out.db"
    result = run_logctl(
        ["consume", "--max-rate", "1000", "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rate = float(re.search(r"records_per_s=(\d+)", result.stderr).group(1))  # type: ignore[union-attr]
    assert 500 <= rate <= 1100, result.stderr  # records over the time to the last ack
    assert_exactly_once(sequence_numbers(sink_messages(db)), 3000)


def test_a_rate_that_is_not_positive_is_exit_3(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("x\n")
    assert run_logctl(["ship", "--no-follow", "--max-rate", "0", str(log)], env).returncode == 3
    assert run_logctl(["consume", "--max-rate", "-5"], env).returncode == 3
