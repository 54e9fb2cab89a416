"""Finding stored records again: ``logctl query`` and ``logctl prune`` over the SQLite and PostgreSQL sinks.

The model (filters, terms, groupings) is in ``model``; each sink has a store module that
turns it into SQL on that sink's indexes. Both answer every query alike (the tests hold
them to one ground truth).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Protocol
from urllib.parse import urlsplit

from logctl.errors import ConfigError
from logctl.query.model import Count, Found, Grouping, Query, fill_buckets
from logctl.sinks import sink_path


class RecordStore(Protocol):
    """A sink's records, to search, count and prune."""

    settle_s: float  # how long after a seq is seen rows with a lower one may still appear (--follow)
    migrated: int  # records moved from an earlier schema when the store was opened

    def describe(self) -> str: ...

    def search(self, query: Query, *, after_seq: int | None = None, upto_seq: int | None = None) -> Iterator[Found]: ...

    def count(self, query: Query, grouping: Grouping) -> list[Count]: ...

    def last_seq(self) -> int: ...

    def prune(self, before_micros: int, most_chunks: int | None = None) -> int: ...

    def close(self) -> None: ...


def open_store(uri: str) -> RecordStore:
    """Open the records of a sink URI for reading; ConfigError for a sink that cannot be searched."""
    scheme = urlsplit(uri).scheme if "://" in uri else uri
    if scheme == "sqlite":
        from logctl.query.sqlite import SqliteStore

        return SqliteStore(sink_path(uri))
    if scheme in ("postgresql", "postgres"):
        from logctl.query.postgres import PostgresStore

        return PostgresStore(uri)
    raise ConfigError(
        f"cannot search sink {uri!r}: query and prune read sqlite:///PATH and postgresql://... sinks "
        "(a file:// sink is JSON Lines: use jq or grep on it)"
    )


def counts(store: RecordStore, query: Query, grouping: Grouping) -> list[Count]:
    """Counts per group; time buckets in order, the empty ones included."""
    return fill_buckets(store.count(query, grouping), grouping, query)


def matches_then_follow(
    store: RecordStore,
    query: Query,
    stop: Callable[[], bool],
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[list[Found]]:
    """The newest ``limit`` matches (oldest first), then new matches as they are stored, until ``stop()``.

    New records are found by their seq. Where rows may become visible out of seq order
    (PostgreSQL, several workers), rows are read again until ``store.settle_s`` seconds
    after their seq was the highest, and those already shown are skipped.
    """
    start = store.last_seq()
    newest = list(store.search(replace(query, oldest_first=False), upto_seq=start))
    newest.reverse()
    yield newest
    follow = replace(query, limit=None)
    floor = start  # every record at or below this seq has been shown, or does not match
    shown: dict[str, int] = {}  # ids shown above the floor, with their seq
    marks: list[tuple[float, int]] = []  # (when, the highest seq stored then)
    while not stop():
        stored_upto = store.last_seq()
        fresh = [f for f in store.search(follow, after_seq=floor) if str(f.row[0]) not in shown]
        if fresh:
            yield fresh
            shown.update((str(f.row[0]), f.seq) for f in fresh)
        now = clock()
        marks.append((now, stored_upto))
        while marks and now - marks[0][0] >= store.settle_s:
            floor = max(floor, marks.pop(0)[1])
        shown = {rid: seq for rid, seq in shown.items() if seq > floor}
        _sleep_unless(stop, poll_s)


def _sleep_unless(stop: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.1, seconds))


__all__ = ["Count", "Found", "Grouping", "Query", "RecordStore", "counts", "matches_then_follow", "open_store"]
