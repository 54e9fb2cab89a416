"""``logctl ship``: follow files or stdin and publish their records, confirmed."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from logctl.checkpoint import CheckpointStore
from logctl.cli import complete
from logctl.cli.app import (
    ConfigOpt,
    DeclareOpt,
    ExchangeOpt,
    MetricsOpt,
    OutputOpt,
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
from logctl.cli.status import render_status
from logctl.errors import ConfigError, NotFound
from logctl.intake import IntakeOptions, load_tokens
from logctl.parsing.formats import parse_options, user_formats_of
from logctl.parsing.layout import learned_layout
from logctl.processing import resolve_processing
from logctl.render import (
    OutputMode,
    RecordRenderer,
    print_explanations,
    print_table,
    resolve_mode,
    stderr_console,
    summary_line,
    write_json_lines,
)
from logctl.shipper import ShipOptions, ShipStats, explain_head, ship
from logctl.units import parse_address, parse_duration, parse_size
from logctl.watch import expand


@app.command(
    "ship",
    epilog=examples(
        "logctl ship /var/log/app/*.log",
        "kubectl logs -f deploy/api | logctl ship - --service api",
        "zcat app.log.gz | logctl ship - --source-id app-2026-11-27   # safe to run again",
        "logctl ship --no-follow --dry-run app.log | jq .level",
        "logctl ship --listen 127.0.0.1:8080 --token-file /etc/logctl/tokens   # POST /api/log",
        "logctl ship --syslog udp://0.0.0.0:5514 --syslog tcp://0.0.0.0:5514 --min-level info",
        "logctl ship /var/log/app/*.log --drop 'GET /healthz' --redact email --redact bearer",
    ),
)
@edge
def ship_cmd(
    paths: Annotated[list[str] | None, typer.Argument(help="Files or globs to follow; - for stdin")] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow/--no-follow", help="Follow like tail -F, or read to the end and exit", rich_help_panel="Input"
        ),
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Publish nothing; print the parsed records", rich_help_panel="Output")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="The same as logctl status (kept for scripts)", rich_help_panel="Output")
    ] = False,
    service: Annotated[
        str | None,
        typer.Option(help="Service for records that name none [default: file stem]", rich_help_panel="Input"),
    ] = None,
    format_name: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Parse every path as this format, not detected: json, logfmt, cri, a text format or one of"
            " the config's [formats] (--explain names them)",
            rich_help_panel="Input",
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            help="Zone of stamps that write none, e.g. Europe/Berlin (env LOGCTL_TIMEZONE) [default: UTC]",
            rich_help_panel="Input",
        ),
    ] = None,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Ship nothing: show for the first 30 lines of each file which format took each line, and why",
            rich_help_panel="Output",
        ),
    ] = False,
    source_id: Annotated[
        str | None,
        typer.Option(
            help="Name stdin's stream: shipped again under this name, it stores nothing twice [default: new each run]",
            rich_help_panel="Input",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Records per message, which also stops at 4 MiB (env LOGCTL_BATCH_SIZE) [default: 2048]",
            rich_help_panel="Batching",
        ),
    ] = None,
    linger_ms: Annotated[
        int | None, typer.Option(help="Send a partial batch after this long [default: 200]", rich_help_panel="Batching")
    ] = None,
    max_in_flight: Annotated[
        int | None, typer.Option(help="Unconfirmed messages at once [default: 16]", rich_help_panel="Batching")
    ] = None,
    serializer: Annotated[
        str | None,
        typer.Option(
            help="msgpack or json [default: msgpack]", rich_help_panel="Batching", autocompletion=complete.SERIALIZERS
        ),
    ] = None,
    from_end: Annotated[
        bool,
        typer.Option("--from-end", help="Start files seen for the first time at their end", rich_help_panel="Input"),
    ] = False,
    ignore_older: Annotated[
        str | None, typer.Option(help="Skip files not modified within this (e.g. 24h)", rich_help_panel="Input")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Glob of files to leave alone (repeatable)", rich_help_panel="Input")
    ] = None,
    max_line_bytes: Annotated[
        str, typer.Option(help="Truncate longer lines (flagged in attrs)", rich_help_panel="Input")
    ] = "1MiB",
    rotate_wait: Annotated[
        str, typer.Option(help="Keep reading a rotated file this long", rich_help_panel="Input")
    ] = "5s",
    shutdown_timeout: Annotated[
        str, typer.Option(help="Wait this long for confirms when stopping", rich_help_panel="Batching")
    ] = "30s",
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes that parse a file far behind; 0: parse in one [default: CPU count]", rich_help_panel="Input"
        ),
    ] = None,
    max_rate: Annotated[
        float | None,
        typer.Option(help="Read at most this many lines a second (smoothed, nothing dropped)", rich_help_panel="Input"),
    ] = None,
    listen: Annotated[
        str | None,
        typer.Option(
            help="Also take records over HTTP on HOST:PORT: POST /api/log (202 once confirmed) and"
            " OpenTelemetry's POST /v1/logs (OTLP/HTTP, 200 once confirmed)",
            rich_help_panel="HTTP intake",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="Bearer tokens for --listen, one a line (name:token); required off loopback",
            rich_help_panel="HTTP intake",
        ),
    ] = None,
    listen_workers: Annotated[
        int,
        typer.Option(
            help="--listen: processes serving the port (SO_REUSEPORT), each with its own broker connection",
            rich_help_panel="HTTP intake",
        ),
    ] = 1,
    max_body_bytes: Annotated[
        str, typer.Option(help="--listen: largest request body, decompressed", rich_help_panel="HTTP intake")
    ] = "10MiB",
    tls_cert_file: Annotated[
        Path | None, typer.Option(help="--listen over HTTPS: the certificate (PEM)", rich_help_panel="HTTP intake")
    ] = None,
    tls_key_file: Annotated[
        Path | None, typer.Option(help="--listen over HTTPS: its private key (PEM)", rich_help_panel="HTTP intake")
    ] = None,
    min_level: Annotated[
        str | None,
        typer.Option(
            help="Drop records below this level (config [edge] min_level)",
            rich_help_panel="Processing",
            autocompletion=complete.LEVELS,
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(help="Keep only records whose message matches a REGEX (repeatable)", rich_help_panel="Processing"),
    ] = None,
    drop: Annotated[
        list[str] | None,
        typer.Option(help="Drop records whose message matches REGEX (repeatable)", rich_help_panel="Processing"),
    ] = None,
    add_field: Annotated[
        list[str] | None,
        typer.Option(
            help="Add KEY=VALUE to every record's attrs; dotted keys nest (repeatable)", rich_help_panel="Processing"
        ),
    ] = None,
    redact: Annotated[
        list[str] | None,
        typer.Option(
            help="Redact a preset (email, bearer, url-password, credit-card, aws-key) or REGEX's matches"
            " (its group, if it has one) in message and attrs (repeatable)",
            rich_help_panel="Processing",
            autocompletion=complete.REDACTIONS,
        ),
    ] = None,
    syslog: Annotated[
        list[str] | None,
        typer.Option(
            help="Also take syslog (RFC 5424, RFC 3164) on udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT"
            " (repeatable; tls:// with --tls-cert-file and --tls-key-file)",
            rich_help_panel="Syslog",
        ),
    ] = None,
    metrics_address: MetricsOpt = None,
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    state_dir: StateDirOpt = None,
    declare: DeclareOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Follow files (or stdin) and publish their records, each batch confirmed by the broker.

    Lines become records (timestamp, level, service, message, trace_id, attrs) whatever
    the format: JSON loggers, logfmt, syslog, web server and database logs, and plain
    text. A file's checkpoint only ever covers confirmed records.
    """
    settings = settings_from(
        config,
        url=url,
        exchange=exchange,
        declare=declare,
        state_dir=state_dir,
        batch_size=batch_size,
        linger_ms=linger_ms,
        max_in_flight=max_in_flight,
        serializer=serializer,
        workers=workers,
        timezone=timezone,
    )
    parse = parse_options(format_name, user_formats_of(settings.formats))
    path_formats = tuple(settings.path_formats.items())
    for _glob, name in path_formats:
        parse_options(name, parse.user_formats)  # an unknown name in the config: exit 3 now, not later
    processing, path_processing = resolve_processing(
        {"min_level": min_level, "keep": keep, "drop": drop, "add_field": add_field, "redact": redact},
        settings.edge,
        settings.path_edge,
    )
    if status:
        render_status(CheckpointStore(settings.state_dir), output)
        return
    if not paths and listen is None and not syslog:
        raise ConfigError(
            "give files, globs or - for stdin, --listen HOST:PORT or --syslog URL (see logctl ship --help)"
        )
    if dry_run and (listen is not None or syslog):
        raise ConfigError("--dry-run previews files and stdin; it does not go with --listen or --syslog")
    endpoints = _syslog_endpoints(syslog or [])
    if source_id is not None and "-" not in (paths or ()):
        raise ConfigError("--source-id names stdin's stream: give - as a path")
    options = ShipOptions(
        paths=tuple(paths or ()),
        follow=follow,
        service=service,
        source_id=source_id,
        batch_size=settings.batch_size,
        linger_s=settings.linger_ms / 1000,
        serializer=settings.serializer,
        from_end=from_end,
        ignore_older_s=parse_duration(ignore_older, "--ignore-older", unit_required=True) if ignore_older else None,
        exclude=tuple(exclude or ()),
        max_line_bytes=parse_size(max_line_bytes, "--max-line-bytes"),
        rotate_wait_s=parse_duration(rotate_wait, "--rotate-wait"),
        shutdown_timeout_s=parse_duration(shutdown_timeout, "--shutdown-timeout"),
        workers=settings.workers,
        max_rate=_positive(max_rate, "--max-rate"),
        parse=parse,
        path_formats=path_formats,
        timezone=settings.timezone,
        processing=processing,
        path_processing=path_processing,
    )
    if explain:
        _explain(options, output)
        return
    renderer = RecordRenderer(output) if dry_run else None
    tune_gc_for_throughput()
    intake = None
    if listen is not None:
        host, port = parse_address(listen, "--listen")
        intake = IntakeOptions(
            host,
            port,
            tokens=load_tokens(token_file) if token_file is not None else {},
            service=service,
            max_body_bytes=parse_size(max_body_bytes, "--max-body-bytes"),
            cert_file=str(tls_cert_file) if tls_cert_file else None,
            key_file=str(tls_key_file) if tls_key_file else None,
            processing=processing,
            workers=_at_least_one(listen_workers),
        )
    syslog_options = None
    if endpoints:
        from logctl.syslog_listener import SyslogOptions

        syslog_options = SyslogOptions(
            endpoints,
            service=service or "syslog",
            processing=processing,
            cert_file=str(tls_cert_file) if tls_cert_file else None,
            key_file=str(tls_key_file) if tls_key_file else None,
        )
    serve_metrics(metrics_address)
    stop = StopFlag().install()
    with _progress_bar(options) as on_progress:
        stats = ship(
            settings,
            options,
            stop,
            notify,
            on_dry_run=renderer.render if renderer else None,
            intake=intake,
            syslog=syslog_options,
            on_progress=on_progress,
        )
    forced = options.parse.format is not None or bool(options.path_formats)
    processed = bool(options.processing) or bool(options.path_processing)
    pairs = _summary_pairs(stats, forced, processed)
    if output is OutputMode.JSON and not dry_run:
        write_json_lines([{k: v for k, v in pairs}])  # asked for JSON: the summary is the result
    notify(("would ship " if dry_run else "shipped ") + summary_line(pairs))


def _syslog_endpoints(urls: list[str]) -> tuple[Any, ...]:
    if not urls:
        return ()
    from logctl.syslog_listener import parse_endpoint  # asyncio and ssl load only for --syslog

    return tuple(parse_endpoint(url) for url in urls)


EXPLAIN_LINES = 30


def _explain(options: ShipOptions, output: OutputMode) -> None:
    """ship --explain: the first lines of each file, each with its format, the reason and its record."""
    if not options.paths:
        raise ConfigError("give the files to explain: logctl ship --explain app.log")
    patterns = options.paths
    for path in [p for pattern in patterns for p in (["-"] if pattern == "-" else expand([pattern]) or [pattern])]:
        found = explain_head(options, path, _head(path, EXPLAIN_LINES))
        title = f"{path}: the first {len(found)} line(s)"
        if resolve_mode(output) is OutputMode.HUMAN:
            print_explanations(title, found)
        else:
            columns = (
                "line",
                "format",
                "why",
                "record",
                "level",
                "timestamp",
                "service",
                "trace_id",
                "dropped",
                "text",
            )
            print_table(title, columns, [tuple(e.as_dict()[c] for c in columns) for e in found], output)
        head = _head(path, EXPLAIN_LINES) if path != "-" else b""
        layout = learned_layout(head, options.shape_for(path).parse)
        if layout is not None:
            other = [e.line for e in found if e.format not in (layout, "continuation")]
            tail = f"; line(s) {', '.join(map(str, other))} did not fit it and were detected" if other else ""
            notify(f"{path}: layout {layout} (its first lines): each line is tried with it first{tail}")
        fell_back = [e.line for e in found if e.fell_back]
        if fell_back:
            numbers = ", ".join(map(str, fell_back))
            notify(f"{path}: no format took line(s) {numbers}: each is a record of its own, whole, at INFO")


def _head(path: str, count: int) -> bytes:
    """The first ``count`` lines of a file (or stdin), as bytes."""
    if path == "-":
        return b"".join(sys.stdin.buffer.readline() for _ in range(count))
    try:
        with open(path, "rb") as fh:
            return b"".join(fh.readline() for _ in range(count))
    except OSError as exc:
        raise NotFound(f"cannot open {path}: {exc.strerror}") from exc


PROGRESS_MIN_BYTES = 16 << 20  # smaller files are read before a bar would be worth drawing


@contextlib.contextmanager
def _progress_bar(options: ShipOptions) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr for --no-follow of big files, on a terminal only: bytes, rate, ETA."""
    console = stderr_console()
    total = 0 if options.follow else sum(_sizes(options))
    if total < PROGRESS_MIN_BYTES or not console.is_terminal:
        yield None
        return
    columns = (TextColumn("shipping"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("ship", total=total)
        yield lambda done: progress.update(task, completed=done)


def _sizes(options: ShipOptions) -> Iterator[int]:
    for path in expand([p for p in options.paths if p != "-"], options.exclude):
        with contextlib.suppress(OSError):
            yield os.path.getsize(path)


def _at_least_one(workers: int) -> int:
    if workers < 1:
        raise ConfigError("--listen-workers must be 1 or more")
    return workers


def _positive(value: float | None, what: str) -> float | None:
    if value is not None and value <= 0:
        raise ConfigError(f"{what} must be a positive number of lines a second")
    return value


def _summary_pairs(stats: ShipStats, forced: bool, processed: bool) -> list[tuple[str, object]]:
    """The closing summary; ``unfit`` whenever a format was forced (on the command line or per path),
    ``dropped`` and ``redacted`` whenever an edge option was set."""
    pairs: list[tuple[str, object]] = [
        ("lines", stats.lines),
        ("records", stats.records),
        ("batches", stats.batches),
        ("bytes", stats.bytes),
        ("files", stats.files),
        ("unconfirmed_batches", stats.unconfirmed),
    ]
    if stats.syslog_messages or stats.syslog_udp_dropped:
        pairs += [("syslog_messages", stats.syslog_messages), ("syslog_udp_lost", stats.syslog_udp_dropped)]
    if stats.http_requests or stats.http_refused:
        pairs += [
            ("http_requests", stats.http_requests),
            ("http_records", stats.http_records),
            ("http_refused", stats.http_refused),
        ]
    if forced:
        pairs.append(("unfit", stats.unfit))
    if processed:
        pairs += [("dropped", stats.dropped), ("redacted", stats.redacted)]
    pairs += [("seconds", round(stats.seconds, 2)), ("lines_per_s", round(stats.lines_per_second))]
    return pairs
