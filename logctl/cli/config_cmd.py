"""``logctl config show``: the resolved settings and where each came from."""

from __future__ import annotations

import typer

from logctl.cli.app import ConfigOpt, ExchangeOpt, OutputOpt, StateDirOpt, UrlOpt, app, edge, settings_from
from logctl.render import OutputMode, print_table

config_app = typer.Typer(help="Inspect logctl's settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show", epilog="Example:\n\n  LOGCTL_EXCHANGE=audit logctl config show")
@edge
def show_cmd(
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    state_dir: StateDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print each setting, its value (password masked) and its source."""
    settings = settings_from(config, url=url, exchange=exchange, state_dir=state_dir)
    print_table("settings", ("key", "value", "source"), settings.describe(), output)
