"""Sinks: where consumed records are stored. One module each; ``open_sink`` picks by URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote, urlsplit

from logctl.errors import ConfigError
from logctl.records import WireRow

Prepared = TypeVar("Prepared")

# Rows one prune transaction deletes: short enough that a consume writing into the same
# store waits milliseconds for its lock, not seconds.
PRUNE_CHUNK = 5000


class Sink(Protocol[Prepared]):
    """A place records are stored durably and idempotently (keyed on the record id).

    A batch is written in two steps, so that consume can run them side by side:
    ``prepare`` turns records into what the sink writes (CPU work, in consume's main
    thread), while the batch before is in ``store`` (the I/O, in the sink thread, where
    SQLite and fsync let go of the GIL). Each step sees the batches in their order.
    """

    def prepare(self, rows: list[WireRow]) -> Prepared:
        """Return a batch of records (as they travelled) in the form ``store`` writes."""
        ...

    def store(self, batch: Prepared) -> int:
        """Store a prepared batch; durable when it returns. Returns how many records were new."""
        ...

    def describe(self) -> str:
        """Say where the records go (consume's start line): the kind of sink and its path or server."""
        ...

    def close(self) -> None:
        """Release the sink's resources."""
        ...


@runtime_checkable
class PrunableSink(Sink[Prepared], Protocol[Prepared]):
    """A sink that can delete its old records (``consume --retain``)."""

    def prune(self, before_micros: int, most_chunks: int | None = None) -> int:
        """Delete records older than ``before_micros`` (at most ``most_chunks`` chunks); return how many."""
        ...


def write(sink: Sink[Any], rows: list[WireRow]) -> int:
    """Prepare and store one batch; durable when it returns. Returns how many records were new."""
    return sink.store(sink.prepare(rows))


def unseen(rows: list[WireRow], seen: set[str]) -> list[WireRow]:
    """Return the rows whose ids are not in ``seen`` (once each), adding their ids to it.

    The usual batch holds no duplicate, which set operations in C find out; only a batch
    that does is checked id by id.
    """
    ids = [r[0] for r in rows]
    if seen.isdisjoint(ids) and len(set(ids)) == len(ids):
        seen.update(ids)
        return rows
    fresh = []
    for r in rows:
        if r[0] not in seen:
            seen.add(r[0])
            fresh.append(r)
    return fresh


def default_sink_uri(state_dir: Path) -> str:
    """Return the default sink: a SQLite database in the state dir."""
    return f"sqlite:///{state_dir / 'logs.db'}"


def sink_path(uri: str) -> Path:
    """Return the filesystem path of a ``scheme:///path`` URI."""
    parts = urlsplit(uri)
    path = unquote(parts.netloc + parts.path) if parts.netloc else unquote(parts.path)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")  # sqlite:////abs/path: POSIX would keep the double slash
    if not path:
        raise ConfigError(f"sink {uri!r} names no path: write it as {parts.scheme}:///path/to/file")
    return Path(path).expanduser()


def check_sink_dir(uri: str, state_dir: Path) -> None:
    """Refuse a file or SQLite sink whose directory is missing, unless it is in the state dir (made there).

    A typo in ``--sink sqlite:///var/lib/logz/x.db`` would otherwise make directories
    wherever it points, the filesystem root included.
    """
    scheme = urlsplit(uri).scheme if "://" in uri else uri
    if scheme not in ("sqlite", "file"):
        return
    parent = sink_path(uri).parent
    if parent.is_dir():
        return
    inside = parent.resolve().is_relative_to(state_dir.expanduser().resolve())
    if not inside:
        raise ConfigError(
            f"sink {uri}: the directory {parent} does not exist; create it first "
            "(logctl makes directories only inside its state dir)"
        )


def open_sink(uri: str) -> Sink[Any]:
    """Open the sink a URI names; ConfigError for an unknown scheme."""
    scheme = urlsplit(uri).scheme if "://" in uri else uri
    if scheme == "sqlite":
        from logctl.sinks.sqlite import SqliteSink

        return SqliteSink(sink_path(uri))
    if scheme == "file":
        from logctl.sinks.jsonfile import JsonFileSink

        return JsonFileSink(sink_path(uri))
    if scheme in ("postgresql", "postgres"):
        from logctl.sinks.postgres import PostgresSink

        return PostgresSink(uri)
    if scheme == "stdout":
        from logctl.sinks.stdout import StdoutSink

        return StdoutSink()
    raise ConfigError(
        f"unknown sink {uri!r}: use one of sqlite:///PATH, file:///PATH, postgresql://USER@HOST/DB, stdout"
    )
