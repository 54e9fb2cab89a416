"""``ship --explain``: for each of the first lines of a file, which format took it and why.

The lines are parsed by the LineParser ship uses, asked to keep its decisions: the format
of each line is the one the parser chose, never a second guess. This module only says
why, in words, and which record each line ended up in. It is for a person looking at a
field that came out wrong, not for the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from logctl.parsing.crash import LEVEL_OF as CRASH_LEVEL
from logctl.parsing.crash import crash_start
from logctl.parsing.fields import Parsed, _plan_of
from logctl.parsing.lines import _CONTINUATION_FIRST, LineParser
from logctl.parsing.text import CANDIDATES, line_shape
from logctl.records import LogRecord, WireRow, record_of


@dataclass(frozen=True, slots=True)
class Explanation:
    """One line: the format that took it (or none), why, and the record it belongs to."""

    line: int  # 1-based
    text: str
    format: str  # "json", "logfmt", a text format's name, a user format's, "continuation" or "none"
    why: str
    record: int  # 1-based index of the record the line is in
    level: str
    timestamp: str
    service: str
    trace_id: str | None
    fell_back: bool  # no format took the line: it is a record of its own, whole, at INFO
    dropped: str = ""  # why the edge options drop its record (--min-level, --keep, --drop), if they do

    def as_dict(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "format": self.format,
            "why": self.why,
            "record": self.record,
            "level": self.level,
            "timestamp": self.timestamp,
            "service": self.service,
            "trace_id": self.trace_id,
            "fell_back": self.fell_back,
            "dropped": self.dropped,
            "text": self.text,
        }


def _json_why(line: str) -> str:
    obj = orjson.loads(line)
    plan = _plan_of(dict(obj))
    roles = [f"{role} from {key!r}" for role, key in
             (("level", plan.level), ("time", plan.time), ("service", plan.service), ("trace id", plan.trace),
              ("message", plan.message)) if key]  # fmt: skip
    if plan.nested_trace:
        roles.append(f"trace id inside {plan.nested_trace!r}")
    if plan.level is None and plan.status:
        roles.append(f"level from the HTTP status in {plan.status!r}")
    return "JSON object: " + (", ".join(roles) if roles else "no known keys (defaults, all keys in attrs)")


def _text_why(line: str, name: str) -> str:
    shape = line_shape(line)
    tried = [f.name for f in CANDIDATES.get(shape, ())]
    before = tried[: tried.index(name)] if name in tried else []
    ahead = f" (not: {', '.join(before)})" if before else ""
    return f"the first text format for lines starting {shape!r} that fits{ahead}"


def why_of(line: str, parsed: Parsed | None, parser: LineParser) -> tuple[str, str]:
    """(format, why) of a line, from what the parser made of it."""
    forced = parser.options.format
    runtime = crash_start(line) if parsed is None or parsed.micros is None else None
    if runtime is not None:
        level = CRASH_LEVEL[runtime].value
        return (
            f"crash/{runtime}",
            f"the first line of a {runtime} crash report: the whole report is one record, {level}",
        )
    if parsed is None:
        if line[:1] in _CONTINUATION_FIRST:
            return "none", "starts with a space or tab, or is empty: never a record's first line"
        if forced is not None:
            return "none", f"--format {forced} does not fit it"
        return "none", "no format fits"
    name = parsed.format
    if forced is not None:
        return name, f"forced with --format {forced}"
    if any(u.name == name for u in parser.options.user_formats):
        return name, "the user-defined format's regex matched (tried before the built-in ones)"
    if name == parser.options.layout:
        return name, f"the file's layout (its first lines are {name}): tried first on every line"
    if name == "json":
        return name, _json_why(line)
    if name == "logfmt":
        return name, "key=value pairs, one of them level, msg, time or the like"
    if name.startswith("cri/"):
        return name, f"CRI container line (time, stream, F/P); the line inside is {name[4:]}"
    if name == "header":
        return name, (
            "no known format; the generic header reader found a time near its start"
            " (and a level among its header tokens)"
        )
    if name.startswith("docker/"):
        return name, f"Docker json-file wrapper; the line inside 'log' is {name[7:]}"
    return name, _text_why(line, name)


def explain(
    parser: LineParser,
    rows: list[WireRow],
    lines: list[tuple[int, str]],
    dropped: Mapping[str, str] | None = None,
) -> list[Explanation]:
    """Explain each line (its offset and text) from the decisions ``parser`` kept while it made ``rows``.

    ``dropped``: why the edge options drop a record, by record id.
    """
    dropped = dropped or {}
    decided = dict(parser.decisions or [])
    records: list[LogRecord] = [record_of(row) for row in rows]
    starts = [int(r.id.rsplit("-", 1)[1], 16) for r in records]
    out = []
    index = 0
    for number, (offset, line) in enumerate(lines, 1):
        while index + 1 < len(starts) and starts[index + 1] <= offset:
            index += 1
        record = records[index]
        parsed = decided.get(offset)
        name, why = why_of(line, parsed, parser)
        starts_record = starts[index] == offset
        if not starts_record:
            name, why = "continuation", f"joins record {index + 1} above ({why})"
        out.append(
            Explanation(
                number,
                line,
                name,
                why,
                index + 1,
                record.level.value,
                record.timestamp.isoformat(),
                record.service,
                record.trace_id,
                starts_record and parsed is None and not name.startswith("crash/"),
                dropped.get(record.id, ""),
            )
        )
    return out
