"""``logctl query`` and ``logctl prune``: find stored records again, count them, delete old ones."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from typing import Annotated

import typer

from logctl.cli import complete
from logctl.cli.app import ConfigOpt, OutputOpt, StateDirOpt, StopFlag, app, edge, examples, notify, settings_from
from logctl.cli.tail import parse_level
from logctl.errors import ConfigError
from logctl.query import Query, RecordStore, counts, matches_then_follow, open_store
from logctl.query.model import (
    Group,
    Grouping,
    levels_at_least,
    parse_ago,
    parse_grouping,
    parse_terms,
    parse_when,
    parse_where,
)
from logctl.records import format_micros, now_utc
from logctl.render import OutputMode, RecordRenderer, render_counts, resolve_mode, write_json_lines
from logctl.sinks import default_sink_uri

SinkOpt = Annotated[
    str | None,
    typer.Option(help="sqlite:///PATH or postgresql://USER@HOST/DB [default: the SQLite sink of the state dir]"),
]
FOLLOW_PIPED_LIMIT = 10  # as tail -f: the last few matches, then the new ones


@app.command(
    "query",
    context_settings={"ignore_unknown_options": True},  # so that -word (exclude a word) is a word
    epilog=examples(
        "logctl query --level ERROR --service billing --since 1h timeout",
        "logctl query 'connection reset' -healthcheck --since 2026-12-01 --until 2026-12-02",
        "logctl query --trace 4bf92f3577b34da6a3ce929d0e0e4736 --oldest-first",
        "logctl query --where http.status=500 --output json | jq -r .message",
        "logctl query --count-by 5m --since 2h --level WARN",
        "logctl query --follow --level ERROR",
    ),
)
@edge
def query_cmd(
    words: Annotated[
        list[str] | None,
        typer.Argument(help="Words the message must hold (all, as words, any case); 'a b' is a phrase; -word excludes"),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(help="At least this level: TRACE DEBUG INFO WARN ERROR FATAL", autocompletion=complete.LEVELS),
    ] = None,
    service: Annotated[list[str] | None, typer.Option(help="Only this service (repeatable)")] = None,
    since: Annotated[
        str | None, typer.Option(help="At or after: an ISO 8601 time, or a duration ago (30m, 1h, 7d)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before: an ISO 8601 time, or a duration ago")] = None,
    trace: Annotated[str | None, typer.Option(help="Only records of this trace id")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE (or KEY!=VALUE) on attributes, dotted keys for nested ones (repeatable)"),
    ] = None,
    count_by: Annotated[
        str | None,
        typer.Option(
            help="Count per level, service, or time bucket (5m, 1h, 1d) instead of listing",
            autocompletion=complete.COUNT_BY,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="At most this many records [default: a screenful on a terminal; all when piped]")
    ] = None,
    oldest_first: Annotated[bool, typer.Option("--oldest-first", help="Oldest first (default newest first)")] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new matching records as consume stores them")
    ] = False,
    sink: SinkOpt = None,
    output: OutputOpt = OutputMode.AUTO,
    state_dir: StateDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Find stored records by level, service, time, trace id, attributes and words, or count them.

    Reads the sink consume writes (SQLite by default, or PostgreSQL); no broker needed.
    """
    query = _query(words or [], level, service, since, until, trace, where, oldest_first, limit)
    if follow and count_by:
        raise ConfigError("--follow lists records: it does not go with --count-by")
    settings = settings_from(config, state_dir=state_dir)
    store = open_store(sink or default_sink_uri(settings.state_dir))
    try:
        if store.migrated:
            notify(f"migrated {store.migrated} record(s) of {store.describe()} to the current schema")
        if count_by:
            grouping = parse_grouping(count_by)
            render_counts(counts(store, query, grouping), grouping, output)
        elif follow:
            _follow(store, query, output)
        else:
            _list(store, query, output)
    finally:
        store.close()


def _query(
    words: list[str],
    level: str | None,
    service: list[str] | None,
    since: str | None,
    until: str | None,
    trace: str | None,
    where: list[str] | None,
    oldest_first: bool,
    limit: int | None,
) -> Query:
    typos = [w for w in words if w.startswith("--")]
    if typos:
        raise ConfigError(f"no such option: {typos[0]} (see logctl query --help)")
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be at least 1")
    now = now_utc()
    equal, unequal = parse_where(where or [])
    return Query(
        levels=levels_at_least(parse_level(level)),
        services=tuple(service or ()),
        since=parse_when(since, "--since", now) if since else None,
        until=parse_when(until, "--until", now) if until else None,
        trace_id=trace,
        where=equal,
        where_not=unequal,
        terms=parse_terms(words),
        oldest_first=oldest_first,
        limit=limit,
    )


def _screenful() -> int:
    return max(10, shutil.get_terminal_size().lines - 3)


def _list(store: RecordStore, query: Query, output: OutputMode) -> None:
    mode = resolve_mode(output)
    limit = query.limit
    if limit is None and mode is OutputMode.HUMAN and sys.stdout.isatty():
        limit = _screenful()
    probe = replace(query, limit=None if limit is None else limit + 1)
    found = [f.row for f in store.search(probe)]
    more = limit is not None and len(found) > limit
    RecordRenderer(mode).render(found[:limit] if limit is not None else found)
    if more:
        order = "oldest" if query.oldest_first else "newest"
        notify(f"showing the {order} {limit} matches; there are more (--limit N, --since, or --output json | less)")
    elif not found:
        notify(f"no records match in {store.describe()}")


def _follow(store: RecordStore, query: Query, output: OutputMode) -> None:
    mode = resolve_mode(output)
    limit = query.limit or (_screenful() if mode is OutputMode.HUMAN else FOLLOW_PIPED_LIMIT)
    renderer = RecordRenderer(mode)
    stop = StopFlag().install()
    for batch in matches_then_follow(store, replace(query, limit=limit), stop):
        renderer.render([f.row for f in batch])


@app.command(
    "prune",
    epilog=examples(
        "logctl prune --older-than 30d", "logctl prune --sink postgresql://logs@db/logs --before 2026-11-01 --dry-run"
    ),
)
@edge
def prune_cmd(
    older_than: Annotated[str | None, typer.Option(help="Delete records older than this (7d, 12h)")] = None,
    before: Annotated[str | None, typer.Option(help="Delete records before this ISO 8601 time")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; delete nothing")] = False,
    sink: SinkOpt = None,
    output: OutputOpt = OutputMode.AUTO,
    state_dir: StateDirOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Delete stored records older than a time, in short transactions that a running consume hardly notices.

    SQLite gives the freed space back to the file system; PostgreSQL reuses it after autovacuum.
    """
    if (older_than is None) == (before is None):
        raise ConfigError("give one of --older-than DURATION or --before TIME")
    now = now_utc()
    cutoff = parse_ago(older_than, "--older-than", now) if older_than else parse_when(str(before), "--before", now)
    settings = settings_from(config, state_dir=state_dir)
    store = open_store(sink or default_sink_uri(settings.state_dir))
    try:
        if dry_run:
            gone = sum(c.count for c in store.count(Query(until=cutoff), Grouping(Group.LEVEL)))
        else:
            gone = store.prune(cutoff)
        where = store.describe()
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    if resolve_mode(output) is OutputMode.JSON:
        write_json_lines([{"deleted": gone, "before": format_micros(cutoff), "dry_run": dry_run, "sink": where}])
    else:
        notify(f"{verb} {gone} record(s) before {format_micros(cutoff)} from {where}")
