"""``logctl replay``: put dead-lettered messages back where they came from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from logctl.cli import complete
from logctl.cli.app import ConfigOpt, ExchangeOpt, OutputOpt, UrlOpt, app, edge, examples, notify, settings_from
from logctl.cli.tail import parse_level
from logctl.errors import ConfigError
from logctl.render import OutputMode, print_table, stderr_console, summary_line
from logctl.replay import REASONS, Outcome, ReplayFilter, ReplayOptions, ReplayReport, replay, service_filter
from logctl.transport import Broker, Topology, queue_depth
from logctl.units import parse_duration


@app.command(
    "replay",
    epilog=examples(
        "logctl replay dlq --dry-run",
        "logctl replay dlq --reason rejected --service api --since 2h",
        "logctl replay dlq --to-queue logs.retry --limit 100",
    ),
)
@edge
def replay_cmd(
    queue: Annotated[
        str, typer.Argument(help="Queue to replay; dlq means <exchange>.dlq", autocompletion=complete.queues)
    ] = "dlq",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would move; move nothing")] = False,
    reason: Annotated[
        list[str] | None,
        typer.Option(help="rejected, expired, maxlen or delivery_limit", autocompletion=complete.choices(*REASONS)),
    ] = None,
    service: Annotated[list[str] | None, typer.Option(help="Only records of this service (repeatable)")] = None,
    level: Annotated[
        list[str] | None, typer.Option(help="Only this level (repeatable)", autocompletion=complete.LEVELS)
    ] = None,
    since: Annotated[str | None, typer.Option(help="Died at or after: ISO time or a duration ago (2h)")] = None,
    until: Annotated[str | None, typer.Option(help="Died at or before: ISO time or a duration ago")] = None,
    limit: Annotated[int | None, typer.Option(help="Move at most this many")] = None,
    to_exchange: Annotated[
        str | None, typer.Option(help="Re-route through this exchange (with the original routing key) instead")
    ] = None,
    to_routing_key: Annotated[
        str | None, typer.Option(help="Re-route with this routing key (through the original exchange) instead")
    ] = None,
    to_queue: Annotated[str | None, typer.Option(help="Send straight to this queue (default exchange)")] = None,
    max_replays: Annotated[int, typer.Option(help="Leave messages replayed this often already")] = 3,
    output: OutputOpt = OutputMode.AUTO,
    url: UrlOpt = None,
    exchange: ExchangeOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Put dead-lettered messages back into the queue that dead-lettered them, then ack them.

    Only that queue gets each message back (through the default exchange), not every
    queue bound to its routing key. Each message leaves the dead-letter queue only after
    the broker confirmed its copy: killed at any moment, replay loses nothing. Messages
    whose queue no longer exists, and those that do not match, stay in order.
    """
    settings = settings_from(config, url=url, exchange=exchange)
    bad = sorted(set(reason or ()) - set(REASONS))
    if bad:
        raise ConfigError(f"--reason {', '.join(bad)}: use {', '.join(REASONS)}")
    options = ReplayOptions(
        queue=Topology(settings.exchange).dead_letter_queue if queue == "dlq" else queue,
        filter=ReplayFilter(
            reasons=frozenset(reason or ()),
            services=service_filter(service or []),
            levels=frozenset(lvl for lvl in (parse_level(x) for x in level or ()) if lvl is not None),
            since=_when(since, "--since"),
            until=_when(until, "--until"),
        ),
        limit=limit,
        to_exchange=to_exchange,
        to_routing_key=to_routing_key,
        to_queue=to_queue,
        max_replays=max_replays,
        dry_run=dry_run,
    )
    with Broker(settings, notify) as source, Broker(settings, notify) as target:
        total = queue_depth(source, options.queue)
        console = stderr_console()
        with Progress(
            TextColumn("replaying"), BarColumn(), MofNCompleteColumn(), console=console, disable=not console.is_terminal
        ) as progress:
            task = progress.add_task("replay", total=total)
            report = replay(source, target, options, on_progress=lambda n: progress.update(task, completed=n))
    _render(report, output, dry_run)


def _when(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text)
        return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
    except ValueError:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text, what))


def _render(report: ReplayReport, output: OutputMode, dry_run: bool) -> None:
    rows = [
        (queue, key, reason, detail, str(outcome) if not dry_run or outcome is not Outcome.MOVED else "would_move", n)
        for (queue, key, reason, detail, outcome), n in sorted(report.rows.items())
    ]
    columns = ("origin_queue", "routing_key", "reason", "detail", "outcome", "count")
    print_table("dead letters", columns, rows, output)
    word = "would move" if dry_run else "moved"
    notify(
        f"{word} {report.moved}, left {report.left} "
        + summary_line([(str(o), n) for o, n in sorted(report.outcomes.items()) if o is not Outcome.MOVED])
    )
