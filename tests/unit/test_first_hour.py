"""What misled a new user in the first hour (issue 25, item 8 and 11): each failed before its fix."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from logctl.cli import app, hoist_global_flags

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"LOGCTL_CONFIG": str(tmp_path / "none.toml"), "LOGCTL_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"}


def cli(args: list[str], env: dict[str, str]) -> Any:
    return runner.invoke(app, args, env=env)


@pytest.mark.parametrize(
    "args,says",
    [
        (["--linger-ms", "-1"], "linger_ms from flag --linger-ms: must be 0 or more"),
        (["--workers", "-3"], "workers from flag --workers: must be 0 or more"),
        (["--ignore-older", "3"], "--ignore-older: '3' has no unit"),
    ],
)
def test_nonsense_numbers_are_refused_not_taken(
    args: list[str], says: str, tmp_path: Path, env: dict[str, str]
) -> None:
    log = tmp_path / "a.log"
    log.write_text("hello\n")
    result = cli(["ship", "--no-follow", "--dry-run", *args, str(log)], env)
    assert result.exit_code == 3, result.output
    assert says in result.output


def test_a_glob_that_matches_nothing_is_said_and_alone_is_exit_5(tmp_path: Path, env: dict[str, str]) -> None:
    alone = cli(["ship", "--no-follow", "--dry-run", str(tmp_path / "nothing-*.log")], env)
    assert alone.exit_code == 5
    assert "no file matches" in alone.output and "nothing to ship" in alone.output
    log = tmp_path / "a.log"
    log.write_text("hello\n")
    beside = cli(["ship", "--no-follow", "--dry-run", "-o", "json", str(tmp_path / "nothing-*.log"), str(log)], env)
    assert beside.exit_code == 0, beside.output
    assert f"warning: no file matches {tmp_path / 'nothing-*.log'} yet" in beside.stderr
    assert '"message":"hello"' in beside.stdout


def test_a_dry_run_does_not_say_it_shipped(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "a.log"
    log.write_text("hello\n")
    result = cli(["ship", "--no-follow", "--dry-run", "-o", "json", str(log)], env)
    assert "would ship lines=1" in result.stderr and "shipped" not in result.stderr


def test_quiet_works_after_the_command_too(tmp_path: Path, env: dict[str, str]) -> None:
    assert hoist_global_flags(["ship", "x.log", "-q"]) == ["-q", "ship", "x.log"]
    assert hoist_global_flags(["query", "--", "-q"]) == ["query", "--", "-q"]  # a word after --
    assert hoist_global_flags(["-q", "ship", "x.log"]) == ["-q", "ship", "x.log"]
    log = tmp_path / "a.log"
    log.write_text("hello\n")
    result = subprocess.run(
        [sys.executable, "-m", "logctl", "ship", "--no-follow", "--dry-run", "-o", "json", str(log), "-q"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and '"message":"hello"' in result.stdout


def test_a_sink_in_a_missing_directory_is_refused_not_made(tmp_path: Path, env: dict[str, str]) -> None:
    missing = tmp_path / "no-such-dir" / "x.db"
    result = cli(["consume", "--sink", f"sqlite:///{missing}"], env)
    assert result.exit_code == 3, result.output
    assert "does not exist; create it first" in result.output
    assert not missing.parent.exists()
    proc = cli(["consume", "--sink", "file:///proc/nope/x.jsonl"], env)
    assert proc.exit_code == 3, proc.output
    assert "unexpected" not in proc.output and "does not exist" in proc.output


def _logctl(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logctl", *args],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_refused_connection_retries_visibly_and_fails_in_seconds(env: dict[str, str]) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = _logctl(
        ["tail"], {**env, "LOGCTL_URL": f"amqp://guest:guest@127.0.0.1:{port}//", "LOGCTL_CONNECT_RETRIES": "2"}
    )
    took = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    lines = result.stderr.splitlines()
    assert [line.split("; ")[-1] for line in lines[:2]] == [
        "retrying in 0.5s (1 of 2 retries)",
        "retrying in 1s (2 of 2 retries)",
    ]
    assert (
        lines[2] == f"logctl: error: cannot reach broker at 127.0.0.1:{port}: connection refused (is RabbitMQ running?)"
    )
    assert len(lines) == 3
    assert took < 10, took  # kombu's own hidden 2 s retry per attempt is gone (it was 12 s with 3 retries)


def test_a_broker_that_does_not_answer_is_announced_after_a_second(env: dict[str, str]) -> None:
    with socket.socket() as silent:  # accepts the TCP connection (the backlog does) and never speaks AMQP
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        result = _logctl(
            ["tail"],
            {
                **env,
                "LOGCTL_URL": f"amqp://guest:guest@127.0.0.1:{port}//",
                "LOGCTL_CONNECT_RETRIES": "0",
                "LOGCTL_CONNECT_TIMEOUT": "3",
            },
        )
    assert result.returncode == 4, result.stderr
    assert result.stderr.splitlines()[0] == f"logctl: connecting to 127.0.0.1:{port} ..."


def test_top_at_80_columns_keeps_names_apart_and_whole() -> None:
    from rich.console import Console

    from logctl.queues import QueueView
    from logctl.render import queue_table

    names = ["logs.default", "logs.errors-billing", "logs.errors-checkout", "logs.dlq", "logs.unrouted"]
    views = [
        QueueView(n, "quorum", ("billing.error", "billing.fatal"), 1_234_567, 1_234_000, 567, 2, 12_345.6, 3.2)
        for n in names
    ]
    console = Console(width=80, record=True, color_system=None)
    console.print(queue_table(views, "logctl top", 80))
    lines = console.export_text().splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines)
    firsts = [line.split()[0] for line in lines[2:] if line.startswith("logs.")]
    assert firsts == names  # each whole: rows that looked alike (logs.…) are told apart
    row = next(line for line in lines if line.startswith("logs.default"))
    assert row.split()[1:8] == ["quorum", "1.2M", "567", "12.3k", "-", "3.2", "2"]  # no tap: no records/s


def test_explain_on_an_80_column_terminal_is_a_block_per_line_with_the_time_whole(
    tmp_path: Path, env: dict[str, str]
) -> None:
    log = tmp_path / "mixed.log"
    log.write_text(
        "2026-12-03T10:00:00.123Z ERROR api request failed with a long message that goes on and on and on "
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n"
        '{"level":"warn","msg":"disk almost full","ts":"2026-12-03T10:00:01Z","service":"db"}\n'
    )
    result = runner.invoke(
        app, ["ship", "--explain", "--output", "human", str(log)], env={**env, "COLUMNS": "80"}, terminal_width=80
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines[1:]), [line for line in lines if len(line) > 80]  # not the path
    assert [line.split()[:2] for line in lines if line.startswith("line ")] == [["line", "1"], ["line", "2"]]
    assert "  ERROR  2026-12-03T10:00:00.123000+00:00  service mixed" in lines
    assert "  trace 4bf92f3577b34da6a3ce929d0e0e4736" in lines
