"""``logctl tail``: a live view of records as they are published."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from logctl.cli import complete
from logctl.cli.app import (
    ConfigOpt,
    DeclareOpt,
    ExchangeOpt,
    OutputOpt,
    StopFlag,
    UrlOpt,
    app,
    edge,
    examples,
    notify,
    settings_from,
    tune_gc_for_throughput,
)
from logctl.errors import ConfigError
from logctl.records import Level
from logctl.render import OutputMode, RecordRenderer
from logctl.tail import InSourceOrder, Tail, TailOptions, tail_patterns


@app.command(
    "tail",
    epilog=examples(
        "logctl tail --level ERROR",
        "logctl tail --service api --count 20",
        "logctl tail --pattern 'billing.*' --output json | jq .message",
    ),
)
@edge
def tail_cmd(
    level: Annotated[
        str | None,
        typer.Option(help="Minimum level: TRACE DEBUG INFO WARN ERROR FATAL", autocompletion=complete.LEVELS),
    ] = None,
    service: Annotated[list[str] | None, typer.Option(help="Only this service (repeatable)")] = None,
    pattern: Annotated[list[str] | None, typer.Option(help="Raw topic pattern such as 'api.*' (repeatable)")] = None,
    count: Annotated[int | None, typer.Option(help="Exit after this many records")] = None,
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    declare: DeclareOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Show records as they are published, through a temporary queue that is gone when you stop.

    A slow terminal never backs up the broker: what cannot be shown in time is dropped
    and counted.
    """
    minimum = parse_level(level)
    settings = settings_from(config, url=url, exchange=exchange, declare=declare)
    patterns = tail_patterns(minimum, service or (), pattern or ())
    renderer = RecordRenderer(output)
    tune_gc_for_throughput()
    stop = StopFlag().install()
    shown = 0
    # About the shippers' linger: a partial batch waits that long before it is published.
    in_order = InSourceOrder(settings.linger_ms / 1000 + 0.1)
    with Tail(settings, TailOptions(tuple(patterns)), notify) as tail:
        for batch in tail.batches(0.05):
            now = time.monotonic()
            in_order.add(batch, now)
            done = stop() or (count is not None and shown + in_order.held >= count)
            ready = in_order.rest() if done else in_order.ripe(now)
            if count is not None:
                ready = ready[: count - shown]
            renderer.render(ready)
            shown += len(ready)
            if done:
                break
    if tail.dropped:
        notify(f"dropped {tail.dropped} record(s) the terminal could not keep up with")
    if tail.undecodable:
        notify(f"skipped {tail.undecodable} message(s) that could not be decoded")


def parse_level(text: str | None) -> Level | None:
    """Return the Level named on the command line (any case, WARNING = WARN)."""
    if text is None:
        return None
    try:
        return Level(text.upper().replace("WARNING", "WARN"))
    except ValueError:
        raise ConfigError(f"--level {text!r}: use one of TRACE DEBUG INFO WARN ERROR FATAL") from None
