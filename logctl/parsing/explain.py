"""``ship --explain``: for each of the first lines of a file, which format took it and why.

It asks the same code the parser runs, one line at a time, and then parses the lines as
ship would to show which record each line ended up in. It is for a person looking at a
field that came out wrong, not for the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from logctl.parsing.fields import _plan_of
from logctl.parsing.formats import DETECT, ParseOptions
from logctl.parsing.lines import _CONTINUATION_FIRST, _CRI, _LOGFMT_START, _NOT_LOGFMT, LineParser, parse_logfmt
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
            "text": self.text,
        }


def _json_why(line: str) -> str | None:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("log"), str) and "stream" in obj:
        return "Docker json-file wrapper: the line inside 'log' is parsed"
    plan = _plan_of(dict(obj))
    roles = [f"{role} from {key!r}" for role, key in
             (("level", plan.level), ("time", plan.time), ("service", plan.service), ("trace id", plan.trace),
              ("message", plan.message)) if key]  # fmt: skip
    if plan.nested_trace:
        roles.append(f"trace id inside {plan.nested_trace!r}")
    if plan.level is None and plan.status:
        roles.append(f"level from the HTTP status in {plan.status!r}")
    return "JSON object: " + (", ".join(roles) if roles else "no known keys (defaults, all keys in attrs)")


def _format_of(line: str, options: ParseOptions, forced: LineParser) -> tuple[str, str]:
    """(format, why) for one line alone; ``forced`` parses with the options' --format, if any."""
    if line[:1] in _CONTINUATION_FIRST:
        return "none", "starts with a space or tab, or is empty: never a record's first line"
    if options.format is not None:
        taken = forced._parse(line) is not None
        return (
            (options.format, "forced with --format")
            if taken
            else ("none", f"--format {options.format} does not fit it")
        )
    for user in options.user_formats:
        if user.regex.match(line):
            return user.name, "the user-defined format's regex matched (tried before the built-in ones)"
    first = line[0]
    if "0" <= first <= "9" and _CRI.match(line):
        return "cri", "CRI container line (time, stream, F/P): the line after it is parsed"
    if first == "{":
        why = _json_why(line)
        if why is not None:
            return "json", why
    elif first not in _NOT_LOGFMT and _LOGFMT_START.match(line) and parse_logfmt(line) is not None:
        return "logfmt", "key=value pairs, one of them level, msg, time or the like"
    shape = line_shape(line)
    tried: list[str] = []
    for text_format in CANDIDATES[shape]:
        found = text_format.regex.match(line)
        if found is not None and text_format.build(found) is not None:
            ahead = f" (not: {', '.join(tried)})" if tried else ""
            return text_format.name, f"the first text format for lines starting {shape!r} that fits{ahead}"
        tried.append(text_format.name)
    return "none", f"no format fits (tried {', '.join(tried) or 'none'})"


def explain(lines: list[str], service: str, options: ParseOptions = DETECT) -> list[Explanation]:
    """Explain ``lines`` (the first lines of a file, without newlines)."""
    parser = LineParser("explain", service, options=options)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8", "surrogatepass")) + 1)
    ready: list[tuple[WireRow, int]] = []
    parser.feed_lines(lines, offsets, ready)
    rows = [row for row, _end in ready]
    last = parser.flush()
    if last is not None:
        rows.append(last)
    records: list[LogRecord] = [record_of(row) for row in rows]
    starts = [int(r.id.rsplit("-", 1)[1], 16) for r in records]
    out = []
    index = 0
    for number, (line, offset) in enumerate(zip(lines, offsets, strict=False)):
        while index + 1 < len(starts) and starts[index + 1] <= offset:
            index += 1
        record = records[index]
        name, why = _format_of(line, options, parser)
        if starts[index] != offset:
            name, why = "continuation", f"joins record {index + 1} above ({why})"
        out.append(
            Explanation(
                number + 1,
                line,
                name,
                why,
                index + 1,
                record.level.value,
                record.timestamp.isoformat(),
                record.service,
                record.trace_id,
            )
        )
    return out
