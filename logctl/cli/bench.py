"""``logctl bench``: throughput and latency of the broker and of logctl itself."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.text import Text

from logctl.bench import BenchMode, BenchOptions, BenchResult, Counters, run_bench
from logctl.cli import complete
from logctl.cli.app import ConfigOpt, OutputOpt, UrlOpt, app, edge, examples, notify, settings_from
from logctl.errors import ConfigError
from logctl.render import OutputMode, print_table, resolve_mode, stderr_console, write_json_lines
from logctl.units import parse_duration

bench_app = typer.Typer(help="Throughput and latency of the broker and of logctl itself.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

Producers = Annotated[int, typer.Option(help="Publishing connections")]
Consumers = Annotated[int, typer.Option(help="Consuming connections")]
Size = Annotated[int, typer.Option(help="Bytes of text per record (ship: per line)")]
Batch = Annotated[int, typer.Option(help="Records per message")]
Serializer = Annotated[str, typer.Option(help="msgpack or json", autocompletion=complete.SERIALIZERS)]
QueueType = Annotated[str, typer.Option(help="classic, quorum or stream", autocompletion=complete.BENCH_QUEUE_TYPES)]
Duration = Annotated[str, typer.Option(help="How long to publish (when --messages is not given)")]
Messages = Annotated[int | None, typer.Option(help="Messages to publish (ship: lines to ship)")]
Rate = Annotated[float | None, typer.Option(help="Target messages/s per producer, for latency at a given load")]
Confirm = Annotated[bool, typer.Option("--confirm/--no-confirm", help="Publisher confirms")]
Prefetch = Annotated[int, typer.Option(help="Consumer prefetch")]
InFlight = Annotated[int, typer.Option(help="Unconfirmed messages per producer")]


def _run(options: BenchOptions, output: OutputMode, url: str | None, config: Path | None) -> None:
    settings = settings_from(config, url=url)
    if options.queue_type not in ("classic", "quorum", "stream"):
        raise ConfigError("--queue-type: use classic, quorum or stream")
    console = stderr_console()
    with Live(Text(""), console=console, transient=True, auto_refresh=False) as live:

        def tick(c: Counters, seconds: float) -> None:
            if console.is_terminal:
                done = c.consumed if options.mode is BenchMode.CONSUME else c.confirmed
                rate = done / max(seconds, 1e-9)
                live.update(
                    Text(f"{options.mode}: {seconds:5.1f}s  {rate:,.0f} msg/s  consumed {c.consumed:,}"), refresh=True
                )

        result = run_bench(settings, options, tick, notify)
    _render(result, output)


def _render(result: BenchResult, output: OutputMode) -> None:
    if resolve_mode(output) is OutputMode.JSON:
        row = asdict(result)
        row.update(
            messages_per_s=round(result.messages_per_s, 1),
            records_per_s=round(result.records_per_s, 1),
            mb_per_s=round(result.mb_per_s, 2),
        )
        write_json_lines([row])
        return
    rows: list[tuple[str, object]] = [
        ("messages/s", f"{result.messages_per_s:,.0f}"),
        ("records/s", f"{result.records_per_s:,.0f}"),
        ("MB/s", f"{result.mb_per_s:,.1f}"),
        ("messages", f"{result.messages:,}"),
        ("records", f"{result.records:,}"),
        ("seconds", f"{result.seconds:.2f}"),
    ]
    for name, lat in (("confirm latency ms", result.confirm_latency), ("end-to-end latency ms", result.e2e_latency)):
        if lat is not None:
            rows.append((name, f"p50 {lat.p50}  p95 {lat.p95}  p99 {lat.p99}  max {lat.max}"))
    print_table(f"bench {result.mode}", ("figure", "value"), rows, output)


@bench_app.command(
    "publish",
    epilog=examples(
        "logctl bench publish --duration 10s",
        "logctl bench publish --producers 2 --batch 256 --queue-type classic",
        "logctl bench publish --rate 200 --duration 30s   # latency at a given load",
    ),
)
@edge
def publish_cmd(
    producers: Producers = 1,
    consumers: Consumers = 1,
    size: Size = 200,
    batch: Batch = 100,
    serializer: Serializer = "msgpack",
    queue_type: QueueType = "quorum",
    duration: Duration = "10s",
    messages: Messages = None,
    rate: Rate = None,
    confirm: Confirm = True,
    prefetch: Prefetch = 200,
    max_in_flight: InFlight = 64,
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Publish batches of records (consumers drain at the same time): msg/s, records/s, MB/s, latencies."""
    options = BenchOptions(
        BenchMode.PUBLISH,
        producers=producers,
        consumers=consumers,
        size=size,
        batch=batch,
        serializer=serializer,
        queue_type=queue_type,
        duration_s=parse_duration(duration, "--duration"),
        messages=messages,
        rate=rate,
        confirm=confirm,
        prefetch=prefetch,
        max_in_flight=max_in_flight,
    )
    _run(options, output, url, config)


@bench_app.command("consume", epilog=examples("logctl bench consume --messages 20000 --prefetch 500"))
@edge
def consume_cmd(
    producers: Producers = 1,
    consumers: Consumers = 1,
    size: Size = 200,
    batch: Batch = 100,
    serializer: Serializer = "msgpack",
    queue_type: QueueType = "quorum",
    messages: Messages = 10_000,
    prefetch: Prefetch = 200,
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Fill a queue, then drain it with consumers (decoding every batch): msg/s, records/s, MB/s."""
    options = BenchOptions(
        BenchMode.CONSUME,
        producers=producers,
        consumers=consumers,
        size=size,
        batch=batch,
        serializer=serializer,
        queue_type=queue_type,
        messages=messages,
        prefetch=prefetch,
    )
    _run(options, output, url, config)


@bench_app.command("ship", epilog=examples("logctl bench ship --messages 500000 --batch 1000"))
@edge
def ship_cmd(
    size: Size = 120,
    batch: Batch = 1000,
    serializer: Serializer = "msgpack",
    messages: Messages = 200_000,
    max_in_flight: InFlight = 16,
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The real pipeline on synthetic lines of the common formats: parse, batch, publish confirmed, count arrivals."""
    options = BenchOptions(
        BenchMode.SHIP, size=size, batch=batch, serializer=serializer, messages=messages, max_in_flight=max_in_flight
    )
    _run(options, output, url, config)
