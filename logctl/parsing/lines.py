"""LineParser: one per source; lines in, complete records out.

Detection runs per line (a file may mix formats). A line's first characters narrow the
candidate formats (its shape), which are tried in one fixed order: which format a line is
taken for depends on the line alone, never on the lines before it. Lines that no format
recognises continue the record above them when that record had a text header (stack
traces, wrapped messages) or when they are indented; otherwise each becomes an INFO
record of its own. Parsing never fails and never drops a line, but for blank lines that
continue no record: they are no record.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from itertools import accumulate, pairwise
from typing import Any

import orjson

from logctl.parsing.crash import LEVEL_OF as CRASH_LEVEL
from logctl.parsing.crash import START_FIRST as CRASH_START_FIRST
from logctl.parsing.crash import CrashReport, Runtime, crash_start
from logctl.parsing.fields import Parsed, micros_from_value, parsed_from_mapping, trace_from_value
from logctl.parsing.formats import DETECT, TEXT_FORMATS, ParseOptions
from logctl.parsing.header import read_header
from logctl.parsing.text import MATCHERS_BY_FIFTH, MATCHERS_BY_FIRST, MATCHERS_DIGITS, MATCHERS_OTHER, TextFormat
from logctl.records import Level, LogRecord, WireRow, id_format, micros_of, now_utc, record_of

# A record stops taking continuation lines at either bound; the next such line starts a
# record of its own (nothing is dropped). The byte bound keeps every record, and so every
# batch, well under RabbitMQ's max_message_size (128 MiB by default), which a stack of
# 1,000 lines of 1 MiB would exceed.
MAX_CONTINUATION_LINES = 1000
# Set on a record whose line held no time it could read: its timestamp is when it was read.
READ_TIME_KEY = "logctl.read_time"
MAX_RECORD_BYTES = 4 << 20

_LOGFMT_START = re.compile(r"[A-Za-z_@][\w.@/-]*=")
# The quoted value as an unrolled loop: a third faster than an alternation per character.
_LOGFMT_PAIR = re.compile(r'([A-Za-z_@][\w.@/-]*)=("[^"\\]*(?:\\.[^"\\]*)*"|\S*)')
# The same pairs for lines without a backslash (no escapes), with the values' quotes left
# outside the group: the quoted value is the one preceded by a quote. The matches are then
# the fields as they are, with no pass in Python to unquote them (a logfmt line: -0.5 us).
_LOGFMT_PAIR_PLAIN = re.compile(r'([A-Za-z_@][\w.@/-]*)="?((?<=")[^"]*(?=")|(?<!")\S*)"?')
_NOT_LOGFMT = frozenset("0123456789<[")  # first characters no logfmt key has: skip its regex
_LOGFMT_MARKERS = frozenset(("level", "lvl", "msg", "message", "time", "ts", "severity", "at"))
# First characters of lines that are never parsed alone: they continue the record above.
_CONTINUATION_FIRST = frozenset((" ", "\t", ""))
_CRI = re.compile(r"(?P<ts>\d{4}-\d\d-\d\dT\S+) (?P<stream>stdout|stderr) (?P<tag>[FP]) (?P<line>.*)", re.DOTALL)
_TEXT_TRACE = re.compile(r"\b(?:trace_?id|traceId|trace\.id)[=:]\s*\"?([0-9A-Za-z-]{8,64})")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
        if "\\" in value:
            value = value.replace('\\"', '"').replace("\\\\", "\\").replace("\\n", "\n")
    return value


def _parse_logfmt_named(line: str) -> Parsed | None:
    parsed = parse_logfmt(line)
    if parsed is not None:
        parsed.format = "logfmt"
    return parsed


def parse_logfmt(line: str) -> Parsed | None:
    """Return the Parsed of a logfmt line, or None when it is not one."""
    plain = "\\" not in line
    pairs = (_LOGFMT_PAIR_PLAIN if plain else _LOGFMT_PAIR).findall(line)
    if len(pairs) < 2:
        return None
    fields = dict(pairs)  # a repeated key keeps its last value
    if _LOGFMT_MARKERS.isdisjoint(fields):
        return None
    if not plain:
        for key, value in fields.items():
            if value[:1] == '"':
                fields[key] = _unquote(value)
    return parsed_from_mapping(fields, line)


class LineParser:
    """Parse the lines of one source into records, joining multi-line records.

    ``feed`` returns the record that the new line completed (or None), as a wire row
    (see records.py: ship encodes it as it is); after it does, ``emitted_end`` is the
    byte offset just past that record. ``feed_lines`` does the same for many lines at
    once, as sources feed it. ``flush`` completes the record still open.
    """

    def __init__(
        self,
        prefix: str,
        service: str,
        clock: Callable[[], datetime] = now_utc,
        options: ParseOptions = DETECT,
        level: Level = Level.INFO,
    ) -> None:
        self.prefix = prefix
        self.service = service
        self.level = level  # of a record whose line names none
        self.options = options
        # Detection unless told otherwise; the choice is made here, once, not per line.
        self._parse: Callable[[str], Parsed | None] = self._detect
        if options.format is not None:
            self._parse = self._forced_parser(options)
        elif options.user_formats:
            self._parse = self._parse_user_first
        elif options.layout is not None:
            self._parse = self._layout_first(TEXT_FORMATS[options.layout])
        self._ids = id_format(prefix)
        self.emitted_end = 0
        # Lines a forced format (--format) did not take, that became records of their own
        # (whole line, INFO); the first of them, as (offset, line), for the operator.
        self.unfit = 0
        self.first_unfit: tuple[int, str] | None = None
        self.last_unfit_start = -1
        self._forced = options.format is not None
        # (offset, what the line parsed to) for every line, when ``record_decisions`` is
        # called (ship --explain); None otherwise, at the cost of one test per call.
        self.decisions: list[tuple[int, Parsed | None]] | None = None
        self._clock = clock
        # The record still open, kept in plain attributes rather than an object per line.
        self._parsed: Parsed | None = None
        self._start = self._end = 0
        self._headed = False
        self._awaiting = False  # the open record's level is on the next line (java.util.logging)
        self._flags: dict[str, Any] | None = None
        self._more: list[str] | None = None  # continuation lines
        self._crash: CrashReport | None = None  # the open record is a runtime's crash report

    @property
    def pending_start(self) -> int | None:
        """Offset of the record still open (not yet returned), if any."""
        return self._start if self._parsed is not None else None

    def feed(self, line: str, start: int, end: int, flags: dict[str, Any] | None = None) -> WireRow | None:
        """Add one line (without its newline) spanning bytes [start, end) of the source."""
        ready: list[tuple[WireRow, int]] = []
        self.feed_lines((line,), (start, end), ready, flags)
        return ready[0][0] if ready else None

    def feed_lines(
        self,
        lines: Sequence[str],
        bounds: Sequence[int],
        ready: list[tuple[WireRow, int]],
        flags: dict[str, Any] | None = None,
    ) -> None:
        """Add many lines: line ``i`` spans bytes [bounds[i], bounds[i + 1]) of the source.

        Appends ``(row, end)`` to ``ready`` for each record completed. The lines are first
        parsed alone, grouped by their first character (in effect by format), then joined
        into records in order. A run of one format keeps the CPU's caches and the
        interpreter's specialisations warm: a block of five formats interleaved line by
        line parses a quarter faster this way. The records are those of a line-by-line
        parse because a line parses the same whatever came before it.
        """
        parse = self._parse
        count = len(lines)
        found: list[Parsed | None] = [None] * count
        by_first: dict[str, list[int]] = {}
        for i, line in enumerate(lines):
            first = line[:1]
            group = by_first.get(first)
            if group is None:
                group = by_first[first] = []
            group.append(i)
        for first, group in by_first.items():
            if first not in _CONTINUATION_FIRST:
                for i in group:
                    found[i] = parse(lines[i])
        if self.decisions is not None:
            self.decisions.extend(zip(bounds, found, strict=False))
        for line, parsed, (start, end) in zip(lines, found, pairwise(bounds), strict=True):
            if self._awaiting and parsed is not None and self._take_level_line(parsed, end):
                continue
            if self._crash is not None and self._continues_crash(line, parsed, end, flags):
                continue
            if (parsed is None or parsed.micros is None) and line[:1] in CRASH_START_FIRST:
                runtime = crash_start(line)
                if runtime is not None and not self._logged_traceback(runtime):
                    if self._parsed is not None:
                        ready.append((self._complete(), self.emitted_end))
                    self._open(Parsed(line, level=CRASH_LEVEL[runtime]), start, end, flags)
                    self._crash = CrashReport(runtime)
                    continue
            if parsed is None:
                if self._parsed is not None and (self._headed or line[:1] in _CONTINUATION_FIRST or not line.strip()):
                    more = self._more
                    if more is None:
                        more = self._more = []
                    if len(more) < MAX_CONTINUATION_LINES and end - self._start <= MAX_RECORD_BYTES:
                        more.append(line)
                        self._end = end
                        if flags:
                            self._flags = {**(self._flags or {}), **flags}
                        continue
                if not line.strip():
                    continue  # a blank line that continues no record is no record of its own
                parsed = Parsed(line)
                headed = False
                if self._forced:
                    self._note_unfit(start, line)
            else:
                headed = parsed.text and parsed.micros is not None
            if self._parsed is not None:
                ready.append((self._complete(), self.emitted_end))
            self._open(parsed, start, end, flags, headed)

    def _open(self, parsed: Parsed, start: int, end: int, flags: dict[str, Any] | None, headed: bool = False) -> None:
        """Make ``parsed`` the open record, spanning [start, end) so far."""
        self._parsed = parsed
        self._start = start
        self._end = end
        self._headed = headed
        self._awaiting = parsed.awaits_level
        self._flags = flags

    def _continues_crash(self, line: str, parsed: Parsed | None, end: int, flags: dict[str, Any] | None) -> bool:
        """Whether ``line`` is part of the open crash report (taken into it), else the report ends."""
        report = self._crash
        assert report is not None
        if parsed is not None and (parsed.micros is not None or not parsed.text):
            self._crash = None  # a line with a time, or a structured one: the program logs again
            return False
        if not line.strip():
            report.blanks += 1  # kept only if the report goes on after it
            return True
        more = self._more if self._more is not None else []
        if not report.takes(line) or len(more) + report.blanks >= MAX_CONTINUATION_LINES:
            self._crash = None
            return False
        if end - self._start > MAX_RECORD_BYTES:
            self._crash = None
            return False
        more.extend([""] * report.blanks)
        more.append(line)
        report.blanks = 0
        self._more = more
        self._end = end
        if flags:
            self._flags = {**(self._flags or {}), **flags}
        return True

    def _logged_traceback(self, runtime: Runtime) -> bool:
        """A Python traceback under a logged line belongs to it (logger.exception), unless that line said INFO or less.

        A program that dies prints its traceback after whatever it logged last, often an
        INFO line; a logged exception comes under its ERROR (or WARN) line, or under a
        line whose level could not be read (kept there, as before crash reports were known).
        """
        held = self._parsed
        if runtime is not Runtime.PYTHON or held is None or not self._headed:
            return False
        return held.level is None or held.level.rank >= Level.WARN.rank

    def record_decisions(self) -> None:
        """From now on keep, for each line, what it parsed to (see ``decisions``)."""
        self.decisions = []

    def _note_unfit(self, start: int, line: str) -> None:
        self.unfit += 1
        self.last_unfit_start = start
        if self.first_unfit is None:
            self.first_unfit = (start, line)

    def add_unfit(self, count: int, first: tuple[int, str] | None) -> None:
        """Count lines of this source that a parse worker found the forced format did not fit."""
        self.unfit += count
        if first is not None and (self.first_unfit is None or first[0] < self.first_unfit[0]):
            self.first_unfit = first

    def _take_level_line(self, parsed: Parsed, end: int) -> bool:
        """The ``LEVEL: message`` line under a header that awaits it completes that record."""
        header = self._parsed
        assert header is not None
        header.awaits_level = self._awaiting = False
        if parsed.micros is not None or parsed.level is None or self._more:
            return False
        header.level, header.message = parsed.level, parsed.message
        self._end = end
        return True

    def adopt_layout(self, options: ParseOptions) -> None:
        """From now on, read lines in the layout ``options`` names (learned once the file had its first lines)."""
        if self.options.format is None and not self.options.user_formats and options.layout is not None:
            self.options = options
            self._parse = self._layout_first(TEXT_FORMATS[options.layout])

    def parsed_alone(self, line: str) -> Parsed | None:
        """What ``line`` parses to by itself (a format, or None), as this parser reads lines."""
        return self._parse(line)

    def starts_record(self, line: str) -> bool:
        """Whether ``line`` begins a new record whatever came before it (it never continues one).

        A line with a time, or a JSON or logfmt one: a line with neither may be part of a
        crash report above it (``Error: ...`` in Node's), and one that starts a report may
        belong to the logged line above it (a Python traceback).
        """
        if line[:1] in _CONTINUATION_FIRST:
            return False
        parsed = self._parse(line)
        return parsed is not None and (parsed.micros is not None or not parsed.text) and crash_start(line) is None

    def flush(self) -> WireRow | None:
        """Complete and return the record still open, if any."""
        return self._complete() if self._parsed is not None else None

    def _detect(self, line: str) -> Parsed | None:
        first = line[0]
        if first == "{":
            parsed = self._parse_json(line)
            if parsed is not None:
                return parsed
        elif first not in _NOT_LOGFMT and _LOGFMT_START.match(line):
            parsed = parse_logfmt(line)
            if parsed is not None:
                parsed.format = "logfmt"
                return parsed
        elif line[10:11] == "T" and (" stdout " in line[:48] or " stderr " in line[:48]):
            cri = _CRI.match(line)  # a container runtime's line: the line inside is parsed
            if cri is not None:
                return self._parse_cri(cri)
        # No known format: the generic header reader (a time at the start, a level after it).
        return self._parse_text(line) or read_header(line)

    def _layout_first(self, layout: TextFormat) -> Callable[[str], Parsed | None]:
        """The file's layout first, detection for a line it does not take."""
        one, detect = _text_format_parser(layout), self._detect
        return lambda line: one(line) or detect(line)

    def _parse_user_first(self, line: str) -> Parsed | None:
        for user in self.options.user_formats:
            parsed = user.parse(line)
            if parsed is not None:
                return parsed
        return self._detect(line)

    def _forced_parser(self, options: ParseOptions) -> Callable[[str], Parsed | None]:
        """The parse of one named format: lines it does not take continue or stand alone, as ever."""
        name = options.format
        user = options.forced_user_format
        if user is not None:
            return user.parse
        if name == "json":
            return lambda line: self._parse_json(line) if line[:1] == "{" else None
        if name == "logfmt":
            return _parse_logfmt_named
        if name == "cri":
            return lambda line: self._parse_cri(found) if (found := _CRI.match(line)) else None
        return _text_format_parser(TEXT_FORMATS[str(name)])

    def _parse_text(self, line: str) -> Parsed | None:
        # The first format of the line's shape that takes it, always in the same order: a
        # line must parse the same whatever came before it (a parse worker starts mid-file).
        matchers = MATCHERS_BY_FIRST.get(line[0], MATCHERS_OTHER)  # line_shape(), inlined
        if matchers is None:
            matchers = MATCHERS_BY_FIFTH.get(line[4:5], MATCHERS_DIGITS)
        for match, build, name in matchers:
            found = match(line)
            if found is not None:
                parsed = build(found)
                if parsed is not None:
                    parsed.text = True
                    parsed.format = name
                    return parsed
        return None

    def _parse_json(self, line: str) -> Parsed | None:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        inner = obj.get("log")
        if isinstance(inner, str) and "stream" in obj:
            return self._parse_docker(obj, inner.rstrip("\r\n"))
        parsed = parsed_from_mapping(obj, line)
        parsed.format = "json"
        return parsed

    def _parse_cri(self, cri: re.Match[str]) -> Parsed:
        """The CRI log format (containerd, CRI-O): ``<RFC 3339 time> <stream> <F|P> <line>``."""
        inner = cri.group("line")
        parsed = (self._parse(inner) if inner and inner[0] not in " \t" else None) or Parsed(inner)
        parsed.format = f"cri/{parsed.format or 'plain'}"
        parsed.attrs["stream"] = cri.group("stream")
        if cri.group("tag") == "P":
            parsed.attrs["partial"] = True  # the runtime split a long line: the rest follows
        if parsed.micros is None:
            parsed.micros = micros_from_value(cri.group("ts"))
        parsed.text = True
        return parsed

    def _parse_docker(self, wrapper: dict[str, Any], inner: str) -> Parsed:
        """Docker's json-file driver: the real line is inside ``log``."""
        parsed = (self._parse(inner) if inner and inner[0] not in " \t" else None) or Parsed(inner)
        parsed.format = f"docker/{parsed.format or 'plain'}"
        parsed.attrs["stream"] = wrapper.get("stream")
        if parsed.micros is None:
            parsed.micros = micros_from_value(wrapper.get("time"))
        return parsed

    def _complete(self) -> WireRow:
        parsed = self._parsed
        assert parsed is not None
        self._parsed = None
        self._crash = None
        message = parsed.message
        if self._more:
            message = "\n".join((message, *self._more)).rstrip()
        self._more = None
        trace_id = parsed.trace_id
        if trace_id is None and "race" in message:
            found = _TEXT_TRACE.search(message)
            trace_id = trace_from_value("trace_id", found.group(1)) if found else None
        attrs = parsed.attrs
        if self._flags:
            attrs.update(self._flags)
        micros = parsed.micros
        if micros is None:  # no time in the line: the time it was read, and a flag that says so
            micros = micros_of(self._clock())
            attrs[READ_TIME_KEY] = True
        self.emitted_end = self._end
        return [
            self._ids % self._start,
            micros,
            parsed.level or self.level,
            parsed.service or self.service,
            message,
            trace_id,
            attrs,
        ]


def _text_format_parser(text_format: TextFormat) -> Callable[[str], Parsed | None]:
    """The parse of one text format alone (--format, or a file's layout): None if it does not fit."""
    match, build, name = text_format.regex.match, text_format.build, text_format.name

    def parse(line: str) -> Parsed | None:
        found = match(line)
        parsed = build(found) if found is not None else None
        if parsed is not None:
            parsed.text = True
            parsed.format = name
        return parsed

    return parse


def parse_text(text: str, prefix: str, service: str, options: ParseOptions = DETECT) -> list[LogRecord]:
    """Parse a whole text (lines separated by newlines) into records; offsets are byte offsets."""
    parser = LineParser(prefix, service, options=options)
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # the newline that ends the last line starts no new one
    sizes = (len(line.encode("utf-8", "surrogatepass")) + 1 for line in lines)
    ready: list[tuple[WireRow, int]] = []
    parser.feed_lines([line.rstrip("\r") for line in lines], list(accumulate(sizes, initial=0)), ready)
    last = parser.flush()
    rows = [row for row, _end in ready] + ([last] if last is not None else [])
    return [record_of(row) for row in rows]
