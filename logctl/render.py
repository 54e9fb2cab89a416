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


def queue_table(views: Sequence[Any], title: str, width: int | None = None) -> Table:
    """The live view of ``logctl top``: dead-letter and unrouted queues in red while they hold messages.

    Laid out for 80 columns: counts and rates in short forms (``1.2M``), a queue's whole
    name whenever it fits (else its start and its distinguishing end), patterns last,
    folded onto further lines rather than cut.
    """
    width = width or Console().width
    table = Table(title=title, title_justify="left", box=None, padding=(0, 1, 0, 0), header_style="bold")
    # ready is msgs - unack (JSON has all three): its room goes to the names and rec/s
    numbers = {"msgs": 6, "unack": 6, "in/s": 6, "rec/s": 6, "out/s": 6, "cons": 4}
    fixed = 7 + sum(numbers.values()) + len(numbers) + 2  # type, the numbers, one space after each
    longest = max((len(v.name) for v in views), default=5)
    name_width = max(12, min(longest, width - fixed - 10))  # 10: at least that much for patterns
    table.add_column("queue", no_wrap=True, width=name_width)
    table.add_column("type", no_wrap=True, width=7)
    for column, column_width in numbers.items():
        table.add_column(column, justify="right", no_wrap=True, width=column_width)
    table.add_column("patterns", overflow="fold")
    for v in views:
        style = "bold red" if v.needs_attention else None
        counts = (short_number(v.messages), short_number(v.unacked))
        records = "-" if v.records_rate is None else short_number(v.records_rate)
        rates = (short_number(v.publish_rate), records, short_number(v.deliver_rate))
        name = elide_middle(v.name, name_width)
        table.add_row(name, v.type, *counts, *rates, str(v.consumers), "\n".join(v.patterns), style=style)
    return table


def print_explanations(title: str, found: Sequence[Any], width: int | None = None) -> None:
    """ship --explain on a terminal: a block per line, laid out for 80 columns (JSON has every field whole)."""
    import textwrap

    console = Console(highlight=False)
    width = width or console.width
    out = Text(f"{title}\n", style="bold")
    for e in found:
        out.append(f"\nline {e.line}", style="bold")
        out.append(f"  {e.format}", style="cyan")
        out.append(f"  record {e.record}")
        if e.dropped:
            out.append(f"  dropped: {e.dropped}", style="yellow")
        out.append("\n  ")
        out.append(e.level, style=LEVEL_STYLES.get(e.level, ""))
        facts = f"  {e.timestamp}  service {e.service}"
        out.append(facts)
        if e.trace_id:  # on the same line if it fits, else under it
            trace = f"trace {e.trace_id}"
            fits = 2 + len(e.level) + len(facts) + 2 + len(trace) <= width
            out.append(f"  {trace}" if fits else f"\n  {trace}")
        out.append("\n")
        why = textwrap.fill(e.why, width - 1, initial_indent="  why:  ", subsequent_indent="        ")
        out.append(why + "\n", style="dim")
        text = e.text if len(e.text) <= width - 9 else e.text[: width - 10] + "…"
        out.append(f"  text: {text}\n")
    out.rstrip()
    console.print(out, soft_wrap=True)


def short_number(value: float) -> str:
    """A count or rate in at most 6 characters: 987, 12.3k, 1.2M; rates under 10 with a decimal."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    if isinstance(value, float) and not value.is_integer() and abs(value) < 10:
        return f"{value:.1f}"
    return f"{value:.0f}"


def elide_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` in the middle: ``logs.…-billing-eu``, so names that share a start stay apart."""
    if len(text) <= width:
        return text
    head = max(1, (width - 1) // 3)
    return f"{text[:head]}…{text[len(text) - (width - 1 - head) :]}"


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
