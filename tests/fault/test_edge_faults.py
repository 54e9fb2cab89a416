"""The edge options under kill -9 and in the parse workers: what is kept arrives once, what is
dropped never, and a dropped line still moves the checkpoint (only past confirmed records)."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import Env, run_logctl, start_logctl
from tests.fault.test_ship_faults import shipped_numbers, stop_ship, wait_caught_up
from tests.numbered import NumberedWriter, assert_exactly_once

pytestmark = [pytest.mark.integration, pytest.mark.fault]

DROP_SEVENS = ["--drop", r"line \d*7\b"]  # the lines whose number ends in 7


def test_kill_9_with_drop_keeps_each_other_line_once_and_trailing_dropped_lines_pass_the_checkpoint(
    env: Env, tmp_path: Path
) -> None:
    log = tmp_path / "app.log"
    log.touch()
    writer = NumberedWriter(log)
    writer.start()
    rng = random.Random(77)
    cmd = ["ship", "--rotate-wait", "1s", "--linger-ms", "50", "--min-level", "info", *DROP_SEVENS, str(log)]
    for _ in range(6):
        proc = start_logctl(cmd, env)
        time.sleep(rng.uniform(0.5, 2.0))
        proc.kill()
        proc.wait()
    written = writer.stop()
    # The file ends in lines that are all dropped: only a checkpoint that moves past dropped
    # lines covers the whole file.
    with log.open("a") as fh:
        fh.write("".join(f'seq={i} level=debug msg="line {i}"\n' for i in range(written, written + 50)))
    final = start_logctl(cmd, env)
    wait_caught_up(env, log)
    stop_ship(final)
    assert_exactly_once(shipped_numbers(env, tmp_path), [n for n in range(written) if n % 10 != 7])


def _stored(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("select id, message from records order by id"))


def test_workers_apply_the_same_edge_options_as_one_process(env: Env, tmp_path: Path) -> None:
    """A backlog far behind goes through the parse workers: the records are those of one process."""
    log = tmp_path / "big.log"
    total = 200_000
    with log.open("w") as fh:
        for i in range(total):
            level = "debug" if i % 5 == 0 else "info"
            extra = f" from user{i}@example.com" if i % 3 == 0 else ""
            fh.write(f'seq={i} level={level} msg="line {i}{extra}"\n')
            if i % 11 == 0:
                fh.write("  at a continuation line\n")
    assert log.stat().st_size > 8 << 20  # several blocks for the workers
    edge = ["--min-level", "info", *DROP_SEVENS, "--redact", "email", "--add-field", "env=prod"]
    results = []
    for workers in ("2", "0"):
        state = tmp_path / f"state-{workers}"
        db = tmp_path / f"sink-{workers}.db"
        run_env = Env({**env, "LOGCTL_STATE_DIR": str(state)})
        shipped = run_logctl(["ship", "--no-follow", "--workers", workers, *edge, str(log)], run_env)
        assert shipped.returncode == 0, shipped.stderr
        expected_drops = sum(1 for i in range(total) if i % 5 == 0 or i % 10 == 7)
        assert f"dropped={expected_drops} " in shipped.stderr, shipped.stderr
        consumed = run_logctl(["consume", "--exit-when-idle", "5s", "--sink", f"sqlite:///{db}"], env)
        assert consumed.returncode == 0, consumed.stderr
        results.append(_stored(db))
    with_workers, one_process = results
    assert with_workers == one_process
    kept = [i for i in range(total) if i % 5 != 0 and i % 10 != 7]
    assert len(one_process) == len(kept)
    messages = [m for _id, m in one_process]
    assert not any("@example.com" in m for m in messages)
    assert sum("[redacted:email]" in m for m in messages) == sum(1 for i in kept if i % 3 == 0)
    with sqlite3.connect(tmp_path / "sink-2.db") as conn:
        (envs,) = conn.execute("select count(*) from records where json_extract(attrs, '$.env') = 'prod'").fetchone()
    assert envs == len(kept)
