"""``logctl queue``: the topology's queues, and bindings changed while consumers run."""

from __future__ import annotations

from typing import Annotated

import typer

from logctl.cli.app import ConfigOpt, ExchangeOpt, OutputOpt, UrlOpt, app, edge, notify, settings_from
from logctl.queues import bind, list_queues, unbind
from logctl.render import OutputMode, print_table
from logctl.transport import Broker, topology_of

queue_app = typer.Typer(help="The topology's queues and their bindings, changed at runtime.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")

QueueArg = Annotated[str, typer.Argument(help="Queue name")]
PatternArg = Annotated[str, typer.Argument(help="Routing pattern on the main exchange, e.g. '*.error' or '#'")]


@queue_app.command("list", epilog="Examples:\n\n  logctl queue list\n\n  logctl queue list --all --output json")
@edge
def list_cmd(
    all_queues: Annotated[
        bool, typer.Option("--all", help="Every queue of the vhost, not only the topology's")
    ] = False,
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List the queues bound to the main exchange (and the unrouted and dead-letter queues).

    Bindings, depth (ready and unacked) and consumers, from the management API, whose
    figures lag the broker by a few seconds.
    """
    settings = settings_from(config, url=url, exchange=exchange)
    views = list_queues(settings, topology_of(settings), all_queues=all_queues)
    rows = [(v.name, v.type, list(v.patterns), v.messages, v.ready, v.unacked, v.consumers) for v in views]
    print_table("queues", ("name", "type", "patterns", "messages", "ready", "unacked", "consumers"), rows, output)


@queue_app.command(
    "bind", epilog="Example:\n\n  logctl queue bind logs.errors '#'   # the running worker takes everything"
)
@edge
def bind_cmd(
    queue: QueueArg,
    pattern: PatternArg,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Bind a queue to the main exchange by a routing pattern; its consumers receive those records at once."""
    settings = settings_from(config, url=url, exchange=exchange)
    with Broker(settings, notify) as broker:
        bind(broker, topology_of(settings), queue, pattern)
    notify(f"bound {queue} to {settings.exchange} by {pattern!r}")


@queue_app.command("unbind", epilog="Example:\n\n  logctl queue unbind logs.errors '#'   # back to what it was")
@edge
def unbind_cmd(
    queue: QueueArg,
    pattern: PatternArg,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove a queue's binding by a routing pattern; what it holds already stays."""
    settings = settings_from(config, url=url, exchange=exchange)
    with Broker(settings, notify) as broker:
        unbind(broker, topology_of(settings), queue, pattern)
    notify(f"unbound {queue} from {settings.exchange} by {pattern!r}")
