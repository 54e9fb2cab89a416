"""Contexts in the config file, passwords kept out of it, and the resolver's precedence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from logctl.cli import app
from logctl.config import resolve, use_context
from logctl.errors import ConfigError

CONFIG = """
exchange = "logs"
batch_size = 100

[contexts.local]
url = "amqp://guest:guest@localhost:5672//"

[contexts.prod]
url = "amqps://shipper@rabbit.prod.example:5671/logs"
exchange = "prod-logs"
password_file = "{secret}"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    secret = tmp_path / "prod.password"
    secret.write_text("s3cr3t/with:odd@chars\n")
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(secret=secret))
    path.chmod(0o600)
    return path


def test_a_context_sits_between_the_environment_and_the_files_top_level(config: Path) -> None:
    settings = resolve({"context": "prod"}, {}, config)
    assert settings.context == "prod"
    assert settings.exchange == "prod-logs" and settings.sources["exchange"].startswith("context prod")
    assert settings.batch_size == 100  # the file's top level still applies
    assert resolve({"context": "prod"}, {"LOGCTL_EXCHANGE": "mine"}, config).exchange == "mine"


def test_the_password_comes_from_its_file_and_is_masked(config: Path) -> None:
    settings = resolve({"context": "prod"}, {}, config)
    assert settings.url == "amqps://shipper:s3cr3t%2Fwith%3Aodd%40chars@rabbit.prod.example:5671/logs"
    assert "password from context prod" in settings.sources["url"]
    shown = dict((key, value) for key, value, _source in settings.describe())
    assert "s3cr3t" not in shown["url"] and "****" in shown["url"]


def test_password_env_names_a_variable(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('url = "amqp://app@rabbit:5672/"\npassword_env = "RABBIT_PASSWORD"\n')
    assert resolve({}, {"RABBIT_PASSWORD": "pw"}, path).url == "amqp://app:pw@rabbit:5672/"
    with pytest.raises(ConfigError, match="RABBIT_PASSWORD"):
        resolve({}, {}, path)


def test_the_context_is_chosen_by_flag_env_or_current_context(config: Path) -> None:
    assert resolve({}, {}, config).context is None
    assert resolve({}, {"LOGCTL_CONTEXT": "local"}, config).context == "local"
    use_context(config, "prod")
    assert resolve({}, {}, config).context == "prod"
    assert resolve({}, {"LOGCTL_CONTEXT": "local"}, config).context == "local"
    use_context(config, "local")  # replaces the line, keeps the rest
    assert config.read_text().count("current_context") == 1
    assert resolve({}, {}, config).context == "local"
    with pytest.raises(ConfigError, match="contexts are local, prod"):
        resolve({"context": "staging"}, {}, config)


def test_a_password_in_a_file_others_can_read_earns_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('url = "amqp://app:hunter2@rabbit:5672/"\n')
    path.chmod(0o644)
    assert "chmod 600" in resolve({}, {}, path).warnings[0]
    path.chmod(0o600)
    assert resolve({}, {}, path).warnings == ()


def test_unknown_keys_in_a_context_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[contexts.a]\nurll = "amqp://x"\n')
    with pytest.raises(ConfigError, match=r"contexts\.a\.urll"):
        resolve({}, {}, path)


def test_config_contexts_use_and_the_global_flag(config: Path) -> None:
    runner = CliRunner()
    env = {"LOGCTL_CONFIG": str(config), "NO_COLOR": "1"}
    listed = runner.invoke(app, ["config", "contexts", "--output", "json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert set(rows) == {"local", "prod"} and not rows["prod"]["current"]
    assert runner.invoke(app, ["config", "use", "prod"], env=env).exit_code == 0
    shown = runner.invoke(app, ["config", "show", "--output", "json"], env=env)
    values = {r["key"]: r for r in map(json.loads, shown.stdout.splitlines())}
    assert values["exchange"]["value"] == "prod-logs" and values["context"]["value"] == "prod"
    assert "s3cr3t" not in shown.stdout
    flag = runner.invoke(app, ["--context", "local", "config", "show", "--output", "json"], env=env)
    values = {r["key"]: r for r in map(json.loads, flag.stdout.splitlines())}
    assert values["exchange"]["value"] == "logs" and values["context"]["value"] == "local"
    missing = runner.invoke(app, ["config", "use", "staging"], env=env)
    assert missing.exit_code == 3
