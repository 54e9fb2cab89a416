"""An option means the same on every path: each ship option that shapes records, against each way records are made.

The table below lists every record-shaping option and how it can be given (flag, config
file, environment variable); each is run on each path (a named file shipped through the
broker, a dry run, a glob, stdin, two parse workers, --explain) and must give the records
of a dry run of the named file, ids aside. Runs are in-process (Typer's CliRunner) but for
the one that ships through the real broker. A field added to RecordShape without a row
here fails ``test_every_record_shaping_field_has_a_row``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from logctl.cli import app
from logctl.config import Settings
from logctl.parallel import MIN_BACKLOG_BYTES
from logctl.sources import RecordShape
from tests.conftest import run_logctl

pytestmark = pytest.mark.integration

LEGACY = """
[formats.legacy]
regex = '^(?P<timestamp>\\d\\d/\\d\\d/\\d{4} \\d\\d:\\d\\d:\\d\\d) <(?P<level>\\w+)> (?P<service>\\w+)#(?P<request>\\d+) (?P<message>.*)$'
timestamp_format = "%d/%m/%Y %H:%M:%S"
"""

LINES = [
    '{"time":"2026-11-27T11:32:10.123Z","level":"warn","msg":"json line","service":"api"}',
    'time=2026-11-27T11:32:11Z level=error msg="logfmt line" service=db',
    "2026-11-27 11:32:12,345 - worker - ERROR - a zone-less stamp",
    "Traceback (most recent call last):",
    '  File "app.py", line 1, in <module>',
    "27/11/2026 11:32:13 <warn> billing#17 a legacy line",
    "a plain line with no time at all",
    "level=info msg=" + "x" * 400,  # longer than --max-line-bytes 200
    "Nov 27 11:32:14 host1 cron[42]: a syslog line, no year, no zone",
    'level=warn msg="mail to ann@example.org bounced" user=ann@example.org',
]


@dataclass(frozen=True)
class Option:
    """One record-shaping option and the ways it can be given."""

    name: str
    field: str  # the RecordShape field it sets
    flag: tuple[str, ...]
    config: str | None = None  # the same in the config file (TOML), if it can be given there
    env: dict[str, str] | None = None  # the same in the environment, if it can be given there
    config_base: str = ""  # config every way of giving it needs (the user formats)


OPTIONS = [
    Option("--format", "parse", ("--format", "logfmt"), config='[path_formats]\n"*.log" = "logfmt"\n'),
    Option(
        "--format NAME of [formats]",
        "parse",
        ("--format", "legacy"),
        config=LEGACY + '\n[path_formats]\n"*.log" = "legacy"\n',
        config_base=LEGACY,
    ),
    Option(
        "--timezone",
        "timezone",
        ("--timezone", "Europe/Berlin"),
        config='timezone = "Europe/Berlin"\n',
        env={"LOGCTL_TIMEZONE": "Europe/Berlin"},
    ),
    Option("--service", "service", ("--service", "checkout")),
    Option("--max-line-bytes", "max_line_bytes", ("--max-line-bytes", "200")),
    Option("--min-level", "processing", ("--min-level", "warn"), config='[edge]\nmin_level = "warn"\n'),
    Option(
        "--redact --add-field",
        "processing",
        ("--redact", "email", "--add-field", "env=qa"),
        config='[path_edge."*.log"]\nredact = ["email"]\nadd_field = { env = "qa" }\n',
    ),
]
DERIVED = {"path"}  # RecordShape fields set from the path itself, by no option
PATHS = ["shipped file", "glob", "stdin", "--workers 2", "--explain", "config file", "environment"]

runner = CliRunner()


def invoke(args: list[str], env: dict[str, str]) -> Any:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, (args, result.output)
    return result


def normalised(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as every path must make them: no id or path, and no time where the line had none."""
    out = []
    for record in records:
        attrs = {k: v for k, v in record["attrs"].items() if k != "log.file.path"}
        kept = {k: v for k, v in record.items() if k not in ("id", "attrs")}
        if attrs.get("logctl.read_time"):
            kept.pop("timestamp")
        out.append({**kept, "attrs": attrs})
    return out


def dry_run(args: list[str], env: dict[str, str]) -> list[dict[str, Any]]:
    result = invoke(["ship", "--no-follow", "--dry-run", "--output", "json", *args], env)
    return normalised([json.loads(line) for line in result.stdout.splitlines()])


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    return {
        "LOGCTL_CONFIG": str(tmp_path / "config.toml"),
        "LOGCTL_STATE_DIR": str(tmp_path / "state"),
        "LOGCTL_WORKERS": "0",
        "NO_COLOR": "1",
    }


def test_every_record_shaping_field_has_a_row() -> None:
    covered = {o.field for o in OPTIONS} | DERIVED
    fields = {f.name for f in dataclasses.fields(RecordShape)}
    assert fields == covered, f"RecordShape fields without a row in OPTIONS: {fields - covered}"


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("option", OPTIONS, ids=[o.name for o in OPTIONS])
def test_an_option_gives_the_same_records_on_every_path(
    option: Option, path: str, tmp_path: Path, base_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    # Named stdin.log, so that its default service is stdin's ("stdin"), as on the stdin path.
    log = tmp_path / "stdin.log"
    log.write_text("\n".join(LINES) + "\n")
    config = Path(base_env["LOGCTL_CONFIG"])
    config.write_text(option.config_base)
    expected = dry_run([*option.flag, str(log)], base_env)
    assert expected != dry_run([str(log)], base_env), f"{option.name} changes nothing here: the test proves nothing"

    if path == "config file":
        if option.config is None:
            # Never tried here, and this says why: the option has no config key (one added fails this).
            assert option.field not in {f.name for f in dataclasses.fields(Settings)}, "it has a config key: add it"
            return
        config.write_text(option.config)
        assert dry_run([str(log)], base_env) == expected
    elif path == "environment":
        if option.env is None:
            # Never tried here, and this says why: the option has no variable (one added fails this).
            assert option.field not in {f.name for f in dataclasses.fields(Settings)}, "it has a variable: add it"
            return
        assert dry_run([str(log)], {**base_env, **option.env}) == expected
    elif path == "glob":
        assert dry_run([*option.flag, str(tmp_path / "*.log")], base_env) == expected
    elif path == "stdin":
        # A process of its own: ship reads stdin's file descriptor, which CliRunner does not replace.
        piped = run_logctl(
            ["ship", "--dry-run", "--output", "json", *option.flag, "-"], base_env, input=log.read_text()
        )
        assert piped.returncode == 0, piped.stderr
        assert normalised([json.loads(line) for line in piped.stdout.splitlines()]) == expected
    elif path == "--workers 2":
        _same_with_workers(option, tmp_path, base_env)
    elif path == "--explain":
        _explain_agrees(option, log, base_env, expected)
    elif path == "shipped file":
        broker = request.getfixturevalue("env")  # a unique exchange, removed afterwards
        env = {**base_env, "LOGCTL_URL": broker["LOGCTL_URL"], "LOGCTL_EXCHANGE": broker["LOGCTL_EXCHANGE"]}
        assert _through_the_broker(option, log, env, tmp_path) == expected


def _same_with_workers(option: Option, tmp_path: Path, base_env: dict[str, str]) -> None:
    """A backlog large enough for the parse workers: the same records as parsed in one process."""
    big = tmp_path / "big" / "stdin.log"
    big.parent.mkdir()
    block = "\n".join(LINES) + "\n"
    big.write_text(block * (MIN_BACKLOG_BYTES // len(block) + 200))
    alone = dry_run([*option.flag, str(big)], base_env)
    parallel = dry_run([*option.flag, str(big)], {**base_env, "LOGCTL_WORKERS": "2"})
    assert len(parallel) == len(alone) > MIN_BACKLOG_BYTES // 1000
    assert parallel == alone


def _explain_agrees(option: Option, log: Path, env: dict[str, str], expected: list[dict[str, Any]]) -> None:
    result = invoke(["ship", "--explain", "--output", "json", *option.flag, str(log)], env)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    firsts = {}
    for line in lines:
        if not line["dropped"]:  # explain names the records the edge options drop; the others are shipped
            firsts.setdefault(line["record"], line)
    firsts = {number: line for number, line in enumerate(firsts.values(), 1)}
    assert len(firsts) == len(expected)
    for number, record in enumerate(expected, 1):
        line = firsts[number]
        assert (line["level"], line["service"]) == (record["level"], record["service"])
        if "timestamp" in record:
            explained = datetime.fromisoformat(line["timestamp"])
            assert explained == datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))


def _through_the_broker(option: Option, log: Path, env: dict[str, str], tmp_path: Path) -> list[dict[str, Any]]:
    invoke(["ship", "--no-follow", *option.flag, str(log)], env)
    out = tmp_path / "out.jsonl"
    invoke(["consume", "--exit-when-idle", "1s", "--sink", f"file://{out}"], env)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    records.sort(key=lambda r: r["id"])  # consume stores by routing key: file order is the id's
    return normalised(records)
