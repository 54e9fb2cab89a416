"""logctl bench: short runs report sane, non-zero figures and leave no queue behind."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import Env, run_logctl

pytestmark = pytest.mark.integration


def bench_queues() -> set[str]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, check=True)
    return {line.strip() for line in out.stdout.splitlines() if line.startswith("bench-")}


@pytest.mark.parametrize(
    ("args", "has_confirm", "has_e2e"),
    [
        (["publish", "--messages", "400", "--batch", "50"], True, True),
        (["publish", "--messages", "200", "--no-confirm", "--queue-type", "classic"], False, True),
        (["publish", "--messages", "100", "--queue-type", "stream", "--consumers", "0"], True, False),
        (["consume", "--messages", "400"], False, False),
        (["ship", "--messages", "20000"], True, False),
    ],
)
def test_bench_reports_sane_figures_and_cleans_up(env: Env, args: list[str], has_confirm: bool, has_e2e: bool) -> None:
    before = bench_queues()
    result = run_logctl(["bench", *args, "--output", "json"], env, timeout=180)
    assert result.returncode == 0, result.stderr
    (row,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert row["messages"] > 0 and row["records"] > 0 and row["seconds"] > 0
    assert row["messages_per_s"] > 0 and row["records_per_s"] > 0 and row["mb_per_s"] > 0
    if args[0] == "ship":
        assert row["records"] == 20_000
    elif args[0] == "consume":
        assert row["records"] == 400 * 100
    else:
        assert row["messages"] == int(args[2])
    assert (row["confirm_latency"] is not None) == has_confirm
    assert (row["e2e_latency"] is not None) == has_e2e
    for lat in (row["confirm_latency"], row["e2e_latency"]):
        if lat is not None:
            assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert bench_queues() == before


def test_bench_rejects_an_unknown_queue_type(env: Env) -> None:
    result = run_logctl(["bench", "publish", "--queue-type", "lazy", "--messages", "1"], env)
    assert result.returncode == 3
    assert "--queue-type" in result.stderr
