"""--format, user-defined formats, --timezone and --explain, through the CLI (ship --dry-run: no broker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from logctl.cli import app
from logctl.parsing import parse_text
from logctl.parsing.formats import set_timezone

runner = CliRunner()

USER_FORMATS = r"""
[formats.legacy]
regex = '^(?P<timestamp>\d\d/\d\d/\d{4} \d\d:\d\d:\d\d) <(?P<level>\w+)> (?P<service>[\w-]+)#(?P<request>\d+) (?P<message>.*)$'
timestamp_format = "%d/%m/%Y %H:%M:%S"
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"LOGCTL_CONFIG": str(tmp_path / "config.toml"), "LOGCTL_STATE_DIR": str(tmp_path / "state"),
            "NO_COLOR": "1", "LOGCTL_WORKERS": "0"}  # fmt: skip


def dry_run(paths: list[str], env: dict[str, str], *extra: str) -> list[dict[str, object]]:
    result = runner.invoke(app, ["ship", "--no-follow", "--dry-run", "--output", "json", *extra, *paths], env=env)
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_user_defined_format_is_detected_before_the_built_in_ones(tmp_path: Path, env: dict[str, str]) -> None:
    Path(env["LOGCTL_CONFIG"]).write_text(USER_FORMATS)
    log = tmp_path / "app.log"
    log.write_text('27/11/2026 11:32:10 <warn> billing#17 card declined\n{"level":"error","msg":"json still"}\n')
    legacy, other = dry_run([str(log)], env)
    assert (legacy["level"], legacy["service"], legacy["message"]) == ("WARN", "billing", "card declined")
    assert legacy["timestamp"] == "2026-11-27T11:32:10.000Z"
    assert legacy["attrs"] == {"request": "17", "log.file.path": str(log)}
    assert (other["level"], other["message"]) == ("ERROR", "json still")


def test_format_forces_one_format_and_lines_it_does_not_fit_stay_whole(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "app.log"
    log.write_text('level=error msg="logfmt"\n{"level":"warn","msg":"not logfmt"}\n')
    first, second = dry_run([str(log)], env, "--format", "logfmt")
    assert (first["level"], first["message"]) == ("ERROR", "logfmt")
    assert (second["level"], second["message"]) == ("INFO", '{"level":"warn","msg":"not logfmt"}')


def test_format_per_path_in_the_config_file(tmp_path: Path, env: dict[str, str]) -> None:
    Path(env["LOGCTL_CONFIG"]).write_text(USER_FORMATS + f'\n[path_formats]\n"{tmp_path}/legacy-*.log" = "legacy"\n')
    (tmp_path / "legacy-1.log").write_text("27/11/2026 11:32:10 <error> api#1 boom\nlevel=warn msg=x\n")
    (tmp_path / "other.log").write_text("level=warn msg=x\n")
    records = dry_run([str(tmp_path / "legacy-1.log"), str(tmp_path / "other.log")], env)
    by_service = {r["service"]: r for r in records}
    assert sorted(by_service) == ["api", "other"]
    assert by_service["api"]["level"] == "ERROR" and by_service["other"]["level"] == "WARN"
    # under legacy, a line it does not fit continues the record above, as a stack trace would
    assert by_service["api"]["message"] == "boom\nlevel=warn msg=x"


@pytest.mark.parametrize(
    ("config", "args", "fragment"),
    [
        ("[formats.bad]\nregex = '(?P<message>unclosed'\n", [], "bad regex"),
        ("", ["--format", "nope"], "unknown format 'nope'"),
        ('[path_formats]\n"*.log" = "nope"\n', [], "unknown format 'nope'"),
        ("[formats.json]\nregex = '(?P<message>.*)'\n", [], "name of a built-in format"),
        ("", ["--timezone", "Mars/Olympus"], "unknown zone 'Mars/Olympus'"),
    ],
)
def test_bad_formats_and_zones_are_one_line_and_exit_3(
    tmp_path: Path, env: dict[str, str], config: str, args: list[str], fragment: str
) -> None:
    Path(env["LOGCTL_CONFIG"]).write_text(config)
    log = tmp_path / "a.log"
    log.write_text("x\n")
    result = runner.invoke(app, ["ship", "--no-follow", "--dry-run", *args, str(log)], env=env)
    assert result.exit_code == 3, result.stderr
    assert fragment in result.stderr and result.stderr.count("\n") == 1


def test_timezone_names_the_zone_of_stamps_that_write_none(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "app.log"
    log.write_text(  # winter and summer time in Berlin; a stamp with its own offset is left as it says
        "2026-01-15 12:00:00,000 INFO winter\n2026-07-15 12:00:00,000 INFO summer\n"
        "2026-07-15T12:00:00+00:00 INFO own zone\n"
    )
    stamps = [r["timestamp"] for r in dry_run([str(log)], env, "--timezone", "Europe/Berlin")]
    assert stamps == ["2026-01-15T11:00:00.000Z", "2026-07-15T10:00:00.000Z", "2026-07-15T12:00:00.000Z"]
    env["LOGCTL_TIMEZONE"] = "+05:30"
    assert dry_run([str(log)], env)[0]["timestamp"] == "2026-01-15T06:30:00.000Z"


def test_timezone_reaches_the_parse_workers(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "big.log"  # far enough behind (4 MiB and more) to be parsed by the workers
    with log.open("w") as fh:
        for i in range(70_000):
            fh.write(f"2026-01-15 12:00:00,000 INFO line {i} {'x' * 40}\n")
    env["LOGCTL_WORKERS"] = "2"
    records = dry_run([str(log)], env, "--timezone", "Europe/Berlin")
    assert len(records) == 70_000
    assert {r["timestamp"] for r in records} == {"2026-01-15T11:00:00.000Z"}


def test_explain_names_each_lines_format_and_record(tmp_path: Path, env: dict[str, str]) -> None:
    log = tmp_path / "app.log"
    log.write_text('2026-11-27 11:32:10,123 ERROR failed\nTraceback:\n{"level":"warn","msg":"x"}\nplain\n')
    result = runner.invoke(app, ["ship", "--explain", "--output", "json", str(log)], env=env)
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["format"], r["record"], r["level"]) for r in rows] == [
        ("ts_level", 1, "ERROR"), ("continuation", 1, "ERROR"), ("json", 2, "WARN"), ("none", 3, "INFO"),
    ]  # fmt: skip
    assert "level from 'level'" in rows[2]["why"]
    human = runner.invoke(app, ["ship", "--explain", "--output", "human", str(log)], env={**env, "COLUMNS": "200"})
    assert "ts_level" in human.stdout and "continuation" in human.stdout


def test_zone_less_stamps_are_utc_unless_told(tmp_path: Path) -> None:
    try:
        set_timezone("America/New_York")
        (shifted,) = parse_text("2026-01-15 12:00:00,000 INFO x\n", "p", "s")
    finally:
        set_timezone(None)
    (plain,) = parse_text("2026-01-15 12:00:00,000 INFO x\n", "p", "s")
    assert shifted.timestamp.hour == 17 and plain.timestamp.hour == 12
