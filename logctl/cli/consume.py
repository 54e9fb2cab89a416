"""``logctl consume``: durable workers that drain a queue into a sink."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from logctl.cli import complete
from logctl.cli.app import (
    ConfigOpt,
    DeclareOpt,
    ExchangeOpt,
    MetricsOpt,
    StateDirOpt,
    StopFlag,
    UrlOpt,
    app,
    edge,
    examples,
    notify,
    serve_metrics,
    settings_from,
    tune_gc_for_throughput,
)
from logctl.consumer import ConsumeOptions, ConsumeStats, consume
from logctl.dedupe import SharedIds
from logctl.errors import ConfigError
from logctl.render import summary_line
from logctl.retention import Retention
from logctl.sinks import PrunableSink, Sink, check_sink_dir, default_sink_uri, open_sink
from logctl.transport import Broker, default_queue_name, topology_of
from logctl.units import parse_duration


@app.command(
    "consume",
    epilog=examples(
        "logctl consume --exit-when-idle 5s",
        "logctl consume --queue logs.errors --bind '*.error' --bind '*.fatal' --sink sqlite:///var/lib/logs/errors.db",
        "logctl consume --sink stdout | jq -r .message",
        "logctl consume --sink postgresql://logs@db/logs   # several workers may share the queue and the table",
    ),
)
@edge
def consume_cmd(
    queue: Annotated[
        str | None,
        typer.Option(
            help="Durable queue to drain, declared if missing [default: <exchange>.default]",
            autocompletion=complete.queues,
        ),
    ] = None,
    bind: Annotated[
        list[str] | None, typer.Option(help="Routing pattern to bind (repeatable); a new queue gets # if none")
    ] = None,
    sink: Annotated[
        str | None,
        typer.Option(help="sqlite:///PATH, file:///PATH, postgresql://USER@HOST/DB or stdout [default: SQLite]"),
    ] = None,
    prefetch: Annotated[
        int | None, typer.Option(help="Unacked messages held at once (env LOGCTL_PREFETCH) [default: 100]")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Records per sink commit (env LOGCTL_CONSUME_BATCH_SIZE) [default: 8192]")
    ] = None,
    linger_ms: Annotated[int | None, typer.Option(help="Commit a partial batch after this long [default: 200]")] = None,
    exit_when_idle: Annotated[
        str | None, typer.Option(help="Stop once the queue stayed empty this long (e.g. 5s)")
    ] = None,
    queue_type: Annotated[
        str,
        typer.Option(help="quorum or classic, when declaring the queue", autocompletion=complete.CONSUME_QUEUE_TYPES),
    ] = "quorum",
    max_rate: Annotated[
        float | None, typer.Option(help="Store at most this many records a second (acks slow down; nothing dropped)")
    ] = None,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    state_dir: StateDirOpt = None,
    dedupe: Annotated[
        str | None,
        typer.Option(help="redis://HOST:PORT/DB: one memory of stored ids for several workers (file, stdout sinks)"),
    ] = None,
    dedupe_ttl: Annotated[str, typer.Option(help="How long --dedupe remembers an id")] = "24h",
    retain: Annotated[
        str | None,
        typer.Option(help="Delete stored records older than this as consume goes (7d, 12h; SQLite, PostgreSQL)"),
    ] = None,
    metrics_address: MetricsOpt = None,
    declare: DeclareOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Drain a queue into a sink: acked only after the sink committed, duplicates dropped by record id.

    Messages that cannot be decoded are dead-lettered. SIGINT/SIGTERM finish the batch
    in hand, ack it and exit (130 after Ctrl-C, 0 after SIGTERM).
    """
    settings = settings_from(
        config,
        url=url,
        exchange=exchange,
        declare=declare,
        state_dir=state_dir,
        prefetch=prefetch,
        consume_batch_size=batch_size,
        linger_ms=linger_ms,
    )
    if max_rate is not None and max_rate <= 0:
        raise ConfigError("--max-rate must be a positive number of records a second")
    queue_name = queue or default_queue_name(settings)
    if queue_name is None:
        raise ConfigError("default_queue is 'none': name the queue with --queue")
    options = ConsumeOptions(
        queue=queue_name,
        patterns=tuple(bind or ()),
        batch_size=settings.consume_batch_size,
        linger_s=settings.linger_ms / 1000,
        prefetch=settings.prefetch,
        exit_when_idle=parse_duration(exit_when_idle, "--exit-when-idle") if exit_when_idle else None,
        queue_type=queue_type,
        max_rate=max_rate,
    )
    serve_metrics(metrics_address)
    keep_s = _retain_seconds(retain)
    uri = sink or default_sink_uri(settings.state_dir)
    check_sink_dir(uri, settings.state_dir)
    target = open_sink(uri)
    shared = SharedIds(dedupe, parse_duration(dedupe_ttl, "--dedupe-ttl")) if dedupe else None
    try:
        retention = _retention(target, keep_s)
        with Broker(settings, notify) as broker:
            tune_gc_for_throughput()
            stats = consume(
                broker,
                topology_of(settings),
                target,
                options,
                stop=StopFlag().install(),
                dedupe=shared,
                retention=retention,
                on_start=lambda: _announce(target, options.queue, retain),
            )
    finally:
        target.close()
        if shared is not None:
            shared.close()
    notify(_summary(stats))


def _retain_seconds(retain: str | None) -> float | None:
    if retain is None:
        return None
    if not retain.strip()[-1:].isalpha():
        raise ConfigError(f"--retain {retain!r}: give a duration with its unit (12h, 7d)")
    keep_s = parse_duration(retain, "--retain")
    if keep_s <= 0:
        raise ConfigError("--retain must be a positive duration")
    return keep_s


def _retention(target: Sink[Any], keep_s: float | None) -> Retention | None:
    if keep_s is None:
        return None
    if not isinstance(target, PrunableSink):
        raise ConfigError(f"--retain prunes SQLite and PostgreSQL sinks; {target.describe()} cannot be pruned")
    return Retention(target, keep_s)


def _announce(target: Sink[Any], queue: str, retain: str | None) -> None:
    """consume's start line: where the records go (and what an earlier schema was brought up to)."""
    migrated = getattr(target, "migrated", 0)
    if migrated:
        notify(f"migrated {migrated} stored record(s) to the current schema")
    kept = f", keeping {retain}" if retain else ""
    notify(f"consuming {queue} into {target.describe()}{kept}")


def _summary(stats: ConsumeStats) -> str:
    return "consumed " + summary_line(
        (
            ("messages", stats.messages),
            ("records", stats.records),
            ("stored", stats.stored),
            ("duplicates", stats.duplicates),
            ("dead_lettered", stats.dead_lettered),
            ("kept_undecodable", stats.kept),
            *((("pruned", stats.pruned),) if stats.pruned else ()),
            ("seconds", f"{stats.seconds:.2f}"),
            ("records_per_s", f"{stats.records_per_s:.0f}"),
        )
    )
