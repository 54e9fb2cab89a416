"""The edge options (--min-level, --keep, --drop, --add-field, --redact): each rule and preset on its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from logctl.errors import ConfigError
from logctl.processing import (
    ProcessingOptions,
    luhn_valid,
    processing_of,
    redaction_of,
    resolve_processing,
)
from logctl.records import Level


def row(message: str, level: str = "INFO", attrs: dict[str, object] | None = None) -> list[object]:
    return ["id", 0, Level(level), "svc", message, None, attrs if attrs is not None else {}]


@pytest.mark.parametrize(
    ("preset", "text", "expected"),
    [
        ("email", "mail to bob.smith+x@mail.example.co.uk now", "mail to [redacted:email] now"),
        ("email", "a@b is no address, nor user@localhost", "a@b is no address, nor user@localhost"),
        ("bearer", "Authorization: Bearer abc.DEF-123_456", "Authorization: Bearer [redacted:bearer]"),
        ("bearer", "authorization: basic dXNlcjpwYXNzd29yZA==", "authorization: basic [redacted:bearer]"),
        (
            "bearer",
            "token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
            "token=[redacted:bearer] end",
        ),
        ("bearer", "a bearer of news", "a bearer of news"),
        ("url-password", "dial amqp://app:hunter2@db:5672/vh", "dial amqp://app:[redacted]@db:5672/vh"),
        (
            "url-password",
            "see https://example.com/a:b@c and ssh://git@host",
            "see https://example.com/a:b@c and ssh://git@host",
        ),
        ("credit-card", "paid with 4111 1111 1111 1111.", "paid with [redacted:card]."),
        ("credit-card", "card 5500-0000-0000-0004 ok", "card [redacted:card] ok"),
        ("credit-card", "order 4111111111111112 (fails Luhn)", "order 4111111111111112 (fails Luhn)"),
        ("credit-card", "at 2026-12-03 16:40:00.123456 took 1234 ms", "at 2026-12-03 16:40:00.123456 took 1234 ms"),
        ("aws-key", "using AKIAIOSFODNN7EXAMPLE now", "using [redacted:aws-key] now"),
        (
            "aws-key",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [redacted:aws-key]",
        ),
        ("aws-key", "AKIA is a prefix, AKIASHORT is too short", "AKIA is a prefix, AKIASHORT is too short"),
    ],
)
def test_each_preset_redacts_what_it_names_and_leaves_lookalikes(preset: str, text: str, expected: str) -> None:
    assert processing_of(ProcessingOptions(redact=(preset,))).redact_text(text) == expected  # type: ignore[union-attr]


def test_luhn_check_of_card_numbers() -> None:
    assert luhn_valid("4111 1111 1111 1111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111 1111 1111 1112")
    assert not luhn_valid("4242")  # too short to be a card


def test_a_regex_of_ones_own_redacts_its_group_if_it_has_one() -> None:
    assert redaction_of(r"password=(\S+)").apply("login password=abc123 ok") == "login password=[redacted] ok"
    assert redaction_of(r"\d{3}-\d{4}").apply("call 555-1234") == "call [redacted]"
    with pytest.raises(ConfigError, match="neither a preset"):
        redaction_of("emial(")


def test_level_floor_then_keep_then_drop() -> None:
    proc = processing_of(ProcessingOptions(min_level=Level.INFO, keep=("GET", "POST"), drop=("/healthz",)))
    assert proc is not None
    kept = proc.kept(
        [
            row("GET /api", "DEBUG"),  # below the floor
            row("GET /api"),
            row("POST /healthz"),  # kept by keep, then dropped by drop
            row("DELETE /api", "ERROR"),  # matches no keep
            row("POST /api", "WARN"),
        ]
    )
    assert [r[4] for r in kept] == ["GET /api", "POST /api"]
    assert proc.dropped == 3


def test_redaction_reaches_nested_attrs_and_added_fields_nest() -> None:
    proc = processing_of(ProcessingOptions(redact=("email",), add_fields=(("env", "prod"), ("k8s.cluster", "eu1"))))
    assert proc is not None
    record = row("from a@example.org", attrs={"user": {"mails": ["b@example.org", 3]}, "k8s": "flat"})
    assert proc.apply(record)
    assert record[4] == "from [redacted:email]"
    assert record[6] == {"user": {"mails": ["[redacted:email]", 3]}, "k8s": {"cluster": "eu1"}, "env": "prod"}
    assert proc.redacted == 1
    untouched = row("nothing here")
    assert proc.apply(untouched) and proc.redacted == 1


def test_no_option_means_no_processing_at_all() -> None:
    assert processing_of(ProcessingOptions()) is None


def test_flags_replace_the_config_keys_and_path_tables_lay_over_them() -> None:
    table = {"min_level": "warn", "redact": ["email"], "add_field": {"env": "prod"}}
    paths = {"/var/log/nginx/*.log": {"drop": ["healthz"], "redact": ["bearer"], "add_field": {"tier": "web"}}}
    overall, per_path = resolve_processing({"min_level": "error", "redact": None}, table, paths)
    assert overall.min_level is Level.ERROR and overall.redact == ("email",)
    assert overall.add_fields == (("env", "prod"),)
    ((_pattern, specific),) = per_path
    combined = overall.under(specific)
    assert combined.redact == ("email", "bearer") and combined.drop == ("healthz",)
    assert dict(combined.add_fields) == {"env": "prod", "tier": "web"}
    assert combined.min_level is Level.ERROR


@pytest.mark.parametrize(
    ("flags", "table", "message"),
    [
        ({"drop": ["("]}, {}, "--drop '\\(': not a valid regex"),
        ({"add_field": ["novalue"]}, {}, "write KEY=VALUE"),
        ({"min_level": "loud"}, {}, "use one of TRACE"),
        ({}, {"dorp": ["x"]}, r"\[edge\]: unknown key\(s\) dorp"),
        ({}, {"redact": "emial("}, "neither a preset"),
    ],
)
def test_bad_edge_options_are_one_clear_error(flags: dict[str, object], table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_processing(flags, table, {})  # type: ignore[arg-type]


def test_per_glob_options_from_the_config_file_in_a_dry_run(tmp_path: Path) -> None:
    """ship --dry-run, a subprocess as a user runs it: [edge] for every path, [path_edge] for nginx's."""
    (tmp_path / "nginx").mkdir()
    app, web = tmp_path / "app.log", tmp_path / "nginx" / "access.log"
    app.write_text('level=info msg="GET /healthz"\nlevel=debug msg=quiet\nlevel=info msg="mail a@b.example"\n')
    web.write_text('level=info msg="GET /healthz"\nlevel=info msg="GET /"\n')
    config = tmp_path / "config.toml"
    config.write_text(
        '[edge]\nmin_level = "info"\nredact = ["email"]\nadd_field = { env = "prod" }\n'
        f'[path_edge."{tmp_path}/nginx/*.log"]\ndrop = ["healthz"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "logctl", "ship", "--no-follow", "--dry-run", "--output", "json", str(app), str(web)],
        env={"LOGCTL_CONFIG": str(config), "LOGCTL_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {(Path(r["attrs"]["log.file.path"]).name, r["message"]) for r in records}
    assert by_file == {
        ("app.log", "GET /healthz"),
        ("app.log", "mail [redacted:email]"),
        ("access.log", "GET /"),
    }
    assert all(r["attrs"]["env"] == "prod" for r in records)
    assert "dropped=2 redacted=1" in result.stderr
