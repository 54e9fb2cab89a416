"""Rendering: records and summaries for humans (rich) and machines (JSON Lines).

stdout carries results only; notices, progress and summaries go to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import IO, Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from logctl.records import WireRow, format_micros, json_bytes, json_record


class OutputMode(StrEnum):
    AUTO = "auto"
    HUMAN = "human"
    JSON = "json"


CONTINUATION_INDENT = "    "
LEVEL_STYLES = {
    "TRACE": "dim",
    "DEBUG": "blue",
    "INFO": "green",
    "WARN": "yellow",
    "ERROR": "red",
    "FATAL": "bold white on red",
}


def stderr_console() -> Console:
    """Return the console for notices; it honours NO_COLOR."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def resolve_mode(mode: OutputMode, stream: IO[str] | None = None) -> OutputMode:
    """``auto`` means human on a terminal, JSON when piped."""
    if mode is not OutputMode.AUTO:
        return mode
    return OutputMode.HUMAN if (stream or sys.stdout).isatty() else OutputMode.JSON


def json_lines(objects: Iterable[dict[str, Any]]) -> bytearray:
    """Return one JSON object per line (what tail, the file and stdout sinks write)."""
    data = bytearray()  # one buffer: many small orjson results each hold ~4 KiB
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    for obj in objects:
        try:  # orjson itself, not json_bytes: a call less per record (10% of this loop)
            data += dumps(obj, default=str, option=newline)
        except orjson.JSONEncodeError:
            data += json_bytes(obj, newline)
    return data


def write_json_lines(objects: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line to stdout."""
    write_stdout(json_lines(objects))


def write_stdout(data: bytes | bytearray) -> None:
    """Write bytes to stdout at once (flushed)."""
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


class RecordRenderer:
    """Print records (wire rows, as decoded): coloured lines on a terminal, JSON Lines otherwise."""

    def __init__(self, mode: OutputMode) -> None:
        self.mode = resolve_mode(mode)
        self._console = Console(highlight=False, soft_wrap=True) if self.mode is OutputMode.HUMAN else None

    def render(self, rows: Sequence[WireRow]) -> None:
        if not rows:
            return
        if self._console is None:
            write_json_lines(json_record(*row) for row in rows)
            return
        for _id, micros, level, service, message, trace_id, attrs in rows:
            line = Text()
            line.append(format_micros(micros), style="dim")
            line.append(" ")
            line.append(f"{level:<5}", style=LEVEL_STYLES[level])
            line.append(f" {service}", style="cyan")
            first, *more = message.split("\n")
            line.append(f" {first}")
            # A record's further lines (a traceback) are indented under it, and what follows
            # them (trace id, attrs) goes on a line of its own, not glued to the last frame.
            for extra_line in more:
                line.append(f"\n{CONTINUATION_INDENT}{extra_line}")
            tail = []
            if trace_id:
                tail.append(f"trace_id={trace_id}")
            if attrs:
                tail.append(" ".join(f"{k}={v}" for k, v in attrs.items()))
            if tail:
                line.append(f"\n{CONTINUATION_INDENT}" if more else " ")
                line.append(" ".join(tail), style="dim")
            self._console.print(line)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]], mode: OutputMode) -> None:
    """Print rows as a table on a terminal or as JSON Lines (keys from ``columns``)."""
    if resolve_mode(mode) is OutputMode.JSON:
        write_json_lines({c: v for c, v in zip(columns, row, strict=True)} for row in rows)
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    Console().print(table)


def queue_table(views: Sequence[Any], title: str) -> Table:
    """The live view of ``logctl top``: dead-letter and unrouted queues in red while they hold messages."""
    table = Table(title=title, title_justify="left")
    for column in ("queue", "type", "messages", "ready", "unacked", "in/s", "out/s", "consumers", "patterns"):
        table.add_column(column, justify="right" if column not in ("queue", "type", "patterns") else "left")
    for v in views:
        style = "bold red" if v.needs_attention else None
        rate_in, rate_out = f"{v.publish_rate:,.1f}", f"{v.deliver_rate:,.1f}"
        cells = (v.name, v.type, f"{v.messages:,}", f"{v.ready:,}", f"{v.unacked:,}", rate_in, rate_out)
        table.add_row(*cells, str(v.consumers), " ".join(v.patterns), style=style)
    return table


def live(render: Callable[[], Any], interval: float, stop: Callable[[], bool]) -> None:
    """Redraw ``render()`` in place every ``interval`` seconds until ``stop()``."""
    from rich.live import Live

    with Live(render(), console=Console(), auto_refresh=False) as view:
        while not stop():
            deadline = time.monotonic() + interval
            while not stop() and time.monotonic() < deadline:
                time.sleep(0.1)
            view.update(render(), refresh=True)


def _cell(value: object) -> str:
    """A table cell: text as is, structured values as compact JSON, nothing as blank."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list | bool):
        return orjson.dumps(value).decode()
    return str(value)


def summary_line(pairs: Sequence[tuple[str, object]]) -> str:
    """Return ``key=value key=value`` for one-line summaries on stderr."""
    return " ".join(f"{k}={v}" for k, v in pairs)


BAR_WIDTH = 40
_LEVEL_ORDER = ("FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE")


def render_counts(counts: Sequence[Any], grouping: Any, mode: OutputMode) -> None:
    """``query --count-by``: one JSON object a group, or a table with a bar per group (per level in time buckets)."""
    key = "bucket" if grouping.group == "time" else str(grouping.group)
    if resolve_mode(mode) is OutputMode.JSON:
        write_json_lines(_count_json(c, key) for c in counts)
        return
    most = max((c.count for c in counts), default=0)
    table = Table(title=f"records per {_per(grouping)}", title_justify="left", box=None, pad_edge=False)
    table.add_column(key)
    table.add_column("count", justify="right")
    table.add_column("")
    for c in counts:
        label = format_micros(int(c.key)) if key == "bucket" else c.key
        table.add_row(label, f"{c.count:,}", _bar(c, most, key))
    Console(highlight=False).print(table)


def _per(grouping: Any) -> str:
    if grouping.group != "time":
        return str(grouping.group)
    seconds = int(grouping.bucket_s)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _count_json(count: Any, key: str) -> dict[str, Any]:
    if key != "bucket":
        return {key: count.key, "count": count.count}
    return {"bucket": format_micros(int(count.key)), "count": count.count, "levels": dict(count.levels)}


def _bar(count: Any, most: int, key: str) -> Text:
    """A bar as long as the count is against the largest; in time buckets, coloured by level."""
    bar = Text()
    if most <= 0 or count.count <= 0:
        return bar
    width = max(1, round(BAR_WIDTH * count.count / most))
    if key != "bucket":
        bar.append("█" * width, style=LEVEL_STYLES.get(count.key, "cyan"))
        return bar
    drawn = 0
    for level in _LEVEL_ORDER:
        n = count.levels.get(level, 0)
        if n:
            cells = max(1, round(width * n / count.count))
            cells = min(cells, width - drawn) if level != _LEVEL_ORDER[-1] else width - drawn
            bar.append("█" * cells, style=LEVEL_STYLES[level])
            drawn += cells
    return bar
