"""``logctl config show|contexts|use``: the resolved settings and where each came from, and contexts."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from logctl.cli.app import (
    ConfigOpt,
    ExchangeOpt,
    OutputOpt,
    StateDirOpt,
    UrlOpt,
    app,
    complete_contexts,
    edge,
    examples,
    notify,
    settings_from,
)
from logctl.config import contexts_of, default_config_path, load_file, mask_url, use_context
from logctl.management import management_url
from logctl.render import OutputMode, print_table

config_app = typer.Typer(help="Inspect logctl's settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show", epilog=examples("LOGCTL_EXCHANGE=audit logctl config show"))
@edge
def show_cmd(
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    state_dir: StateDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print each setting, its value (password masked) and its source, and the config file read."""
    settings = settings_from(config, url=url, exchange=exchange, state_dir=state_dir)
    file = config or default_config_path(dict(os.environ))
    rows = [("config_file", str(file), "read" if file.is_file() else "none there (defaults and env only)")]
    for key, value, source in settings.describe():
        if key == "management_url" and not settings.management_url:  # what the commands will use
            value, source = (
                mask_url(management_url(settings)),
                "derived from url (its host, port 15672; 15671 for amqps)",
            )
        rows.append((key, value, source))
    print_table("settings", ("key", "value", "source"), rows, output)


@config_app.command("contexts", epilog=examples("logctl config contexts --output json"))
@edge
def contexts_cmd(output: OutputOpt = OutputMode.AUTO, config: ConfigOpt = None) -> None:
    """List the config file's contexts; the one in use is marked."""
    file = config or default_config_path(dict(os.environ))
    settings = settings_from(config)
    rows = [
        (name, name == settings.context, mask_url(str(values.get("url", ""))), str(values.get("exchange", "")))
        for name, values in sorted(contexts_of(load_file(file)).items())
    ]
    if not rows:
        where = f"{file}: no [contexts.NAME] tables" if file.is_file() else f"no config file at {file}"
        notify(f"no contexts ({where})")
    print_table("contexts", ("name", "current", "url", "exchange"), rows, output)


@config_app.command("use", epilog=examples("logctl config use prod"))
@edge
def use_cmd(
    name: Annotated[str, typer.Argument(help="Context to make current", autocompletion=complete_contexts)],
    config: ConfigOpt = None,
) -> None:
    """Make a context the config file's current_context."""
    file = config or default_config_path(dict(os.environ))
    use_context(file, name)
    notify(f"current context: {name} (in {file})")
