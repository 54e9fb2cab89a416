"""``logctl queue`` and ``logctl top``: the topology's queues, their bindings changed while
consumers run, and a live view of their depth and rates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from logctl.cli.app import (
    ConfigOpt,
    ExchangeOpt,
    OutputOpt,
    StopFlag,
    UrlOpt,
    app,
    edge,
    examples,
    notify,
    settings_from,
)
from logctl.errors import PartialFailure
from logctl.management import broker_management
from logctl.queues import QueueView, bind, list_queues, unbind
from logctl.render import OutputMode, live, print_table, queue_table, resolve_mode, write_json_lines
from logctl.tap import RecordTap, records_per_s
from logctl.transport import Broker, Topology, topology_of
from logctl.units import parse_duration

queue_app = typer.Typer(help="The topology's queues and their bindings, changed at runtime.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")

QueueArg = Annotated[str, typer.Argument(help="Queue name")]
PatternArg = Annotated[str, typer.Argument(help="Routing pattern on the main exchange, e.g. '*.error' or '#'")]


@queue_app.command("list", epilog=examples("logctl queue list", "logctl queue list --all --output json"))
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


@queue_app.command("bind", epilog=examples("logctl queue bind logs.errors '#'   # the running worker takes everything"))
@edge
def bind_cmd(
    queue: QueueArg,
    pattern: PatternArg,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Bind a queue to the main exchange by a routing pattern; its consumers receive those records at once."""
    _change_binding(bind, "bound {queue} to {exchange} by {pattern!r}", queue, pattern, url, exchange, config)


@queue_app.command("unbind", epilog=examples("logctl queue unbind logs.errors '#'   # back to what it was"))
@edge
def unbind_cmd(
    queue: QueueArg,
    pattern: PatternArg,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove a queue's binding by a routing pattern; what it holds already stays."""
    _change_binding(unbind, "unbound {queue} from {exchange} by {pattern!r}", queue, pattern, url, exchange, config)


def _change_binding(
    change: Callable[[Broker, Topology, str, str], None],
    done: str,
    queue: str,
    pattern: str,
    url: str | None,
    exchange: str | None,
    config: Path | None,
) -> None:
    settings = settings_from(config, url=url, exchange=exchange)
    with Broker(settings, notify) as broker:
        change(broker, topology_of(settings), queue, pattern)
    notify(done.format(queue=queue, exchange=settings.exchange, pattern=pattern))


@app.command(
    "top",
    epilog=examples(
        "logctl top",
        "logctl top --once --output json | jq 'select(.messages > 0)'",
        "logctl top --once --fail-if-dlq   # cron or a monitoring check: exit 7 while dead letters wait",
    ),
)
@edge
def top_cmd(
    all_queues: Annotated[
        bool, typer.Option("--all", help="Every queue of the vhost, not only the topology's")
    ] = False,
    once: Annotated[bool, typer.Option("--once", help="One snapshot, then exit (what --output json gives)")] = False,
    interval: Annotated[str, typer.Option(help="Time between refreshes")] = "2s",
    fail_if_dlq: Annotated[
        bool, typer.Option("--fail-if-dlq", help="Exit 7 when the dead-letter queue holds messages")
    ] = False,
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """A live view of the queues: depth, ready and unacked, rates in and out, consumers.

    The dead-letter and unrouted queues show in red while they hold messages. Figures
    come from the management API, which averages rates over a few seconds.
    """
    settings = settings_from(config, url=url, exchange=exchange)
    topology = topology_of(settings)
    seconds = parse_duration(interval, "--interval")
    json_out = resolve_mode(output) is OutputMode.JSON
    api = broker_management(settings)  # checked once to be this broker's, then asked each refresh
    if once or json_out:
        views = list_queues(settings, topology, all_queues=all_queues, api=api)
        if json_out:
            write_json_lines(_view_json(v) for v in views)
        else:
            Console().print(queue_table(views, f"queues of {settings.exchange}"))
    else:
        stop = StopFlag().install()
        with RecordTap(settings) as tap:  # records a second, which the API (messages) cannot give

            def refreshed() -> Table:
                views = list_queues(settings, topology, all_queues=all_queues, api=api)
                rates = tap.rates()
                if tap.error is not None:
                    return queue_table(views, f"logctl top (no records/s: {tap.error})")
                return queue_table([_with_records_rate(v, rates) for v in views], "logctl top")

            live(refreshed, seconds, stop)
        views = list_queues(settings, topology, all_queues=all_queues, api=api)
    waiting = sum(v.messages for v in views if v.role == "dlq")
    if fail_if_dlq and waiting:
        raise PartialFailure(f"{waiting} message(s) wait in the dead-letter queue {topology.dead_letter_queue}")


def _with_records_rate(view: QueueView, rates: dict[str, float]) -> QueueView:
    if not view.patterns:
        return view  # bound elsewhere (the dead-letter and unrouted queues): not what the tap sees
    return dataclasses.replace(view, records_rate=records_per_s(rates, view.patterns))


def _view_json(view: QueueView) -> dict[str, object]:
    return {
        "name": view.name,
        "type": view.type,
        "patterns": list(view.patterns),
        "messages": view.messages,
        "ready": view.ready,
        "unacked": view.unacked,
        "consumers": view.consumers,
        "publish_rate": view.publish_rate,
        "deliver_rate": view.deliver_rate,
        "role": view.role or None,
    }
