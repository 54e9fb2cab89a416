"""Hypothesis properties: the codec round-trips any record; reading any bytes never raises."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from logctl.codec import RowPacker, decode, encode
from logctl.parsing import LineParser
from logctl.parsing.fields import Parsed, micros_from_iso
from logctl.parsing.lines import _LOGFMT_PAIR, _LOGFMT_PAIR_PLAIN, _unquote
from logctl.parsing.text import CANDIDATES, line_shape
from logctl.records import MAX_MICROS, MIN_MICROS, Level, LogRecord, micros_of, record_of
from logctl.sources import FileSource, RecordShape, Source
from tests.unit.test_parsing import FORMAT_EXAMPLES

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)

records = st.builds(
    LogRecord,
    id=st.text(min_size=1),
    timestamp=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)),
    level=st.sampled_from(list(Level)),
    service=st.text(),
    message=st.text(),
    trace_id=st.none() | st.text(),
    attrs=st.dictionaries(st.text(), json_values, max_size=5),
)


@given(st.lists(records, max_size=20), st.sampled_from(["msgpack", "json"]))
def test_codec_round_trips_any_batch(batch: list[LogRecord], serializer: str) -> None:
    body, content_type = encode(batch, serializer)
    assert decode(body, content_type) == batch


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=4096), st.integers(min_value=16, max_value=512))
def test_reading_arbitrary_bytes_yields_records_and_never_raises(data: bytes, max_line: int) -> None:
    with tempfile.NamedTemporaryFile(delete=False) as fh:
        fh.write(data)
    try:
        fd = os.open(fh.name, os.O_RDONLY)
        src = FileSource(fh.name, fd, os.fstat(fd), RecordShape("fuzz", max_line))
        first = src.first_line(final=True)
        if first is None:
            assert data == b""
            return
        src.identify(first)
        src.begin(0)
        while src.read(1024):
            pass
        src.finish()
        ends = [end for _, end in src.ready]
        assert ends == sorted(ends)
        if not any(line.decode("utf-8", "replace").strip() for line in data.split(b"\n")):
            assert ends == []  # blank lines that continue no record are no record
            src.close()
            return
        assert ends[-1] == len(data)  # every byte belongs to a record (blank lines before the first aside)
        for row, _ in src.ready:
            record = record_of(row)
            body, content_type = encode([record])
            assert decode(body, content_type) == [record]
        src.close()
    finally:
        os.unlink(fh.name)


# Lines of every kind a block may hold: records of each format, continuation lines,
# blank and indented lines, CRLF endings, lines that are too long, and text no format takes.
_BLOCK_LINES = [
    *(example[0] for example in FORMAT_EXAMPLES),
    "Traceback (most recent call last):",
    '  File "x.py", line 1, in <module>',
    "\tat a.B.c(B.java:1)",
    "ValueError: bad",
    "",
    "   ",
    "plain words",
    "2026-11-27 11:32:10,123 ERROR crlf\r",
    "é accents é " * 8,
    "{not json",
]


def _source_at(offset: int, max_line: int) -> Source:
    """A source parsing from ``offset``, whose lines without a timestamp all get the same one."""
    source = Source(RecordShape("svc", max_line))
    source.start_parser("p", offset)
    source.parser = LineParser("p", "svc", clock=lambda: datetime(2026, 11, 27, tzinfo=UTC))
    source.parser.emitted_end = offset
    return source


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_BLOCK_LINES), min_size=1, max_size=40), st.integers(min_value=40, max_value=400))
def test_a_block_parses_into_the_records_of_its_lines_fed_one_by_one(lines: list[str], max_line: int) -> None:
    """Source.parse_lines parses a block's lines grouped by format, then joins them in
    order; the records must be exactly those of feeding the lines one at a time."""
    block = "\n".join(lines).encode()
    source, one_by_one = _source_at(1000, max_line), _source_at(1000, max_line)
    source.parse_lines(block, 1000)
    source.flush_record()

    offset = 1000
    for line in lines:
        raw = line.encode()
        one_by_one._raw_line(raw, offset, offset + len(raw) + 1)
        offset += len(raw) + 1
    one_by_one.flush_record()
    assert source.ready == one_by_one.ready
    assert source.lines == one_by_one.lines == len(lines)


def _logfmt_fields_with_escapes(line: str) -> dict[str, str]:
    """The fields of a logfmt line as lines with escapes get them (value by value)."""
    fields = dict(_LOGFMT_PAIR.findall(line))
    return {key: _unquote(value) if value[:1] == '"' else value for key, value in fields.items()}


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='ab=" \t.x1', max_size=30))
def test_logfmt_lines_without_escapes_get_the_fields_of_the_escape_aware_path(text: str) -> None:
    """parse_logfmt reads lines without a backslash with a regex that leaves quotes out of
    the values; it must find the same fields, quoted, unterminated or odd."""
    line = f"level=info {text} msg=x"
    assert dict(_LOGFMT_PAIR_PLAIN.findall(line)) == _logfmt_fields_with_escapes(line)


def _first_format_taking(line: str) -> Parsed | None:
    """The rule the text parser follows: the first format of the line's shape that takes it."""
    for fmt in CANDIDATES[line_shape(line)]:
        match = fmt.regex.match(line)
        parsed = fmt.build(match) if match else None
        if parsed is not None:
            parsed.text = True  # as the parser marks what a text format took
            parsed.format = fmt.name  # and which one it was (ship --explain reports it)
            return parsed
    return None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([example[0] for example in FORMAT_EXAMPLES]), st.text(min_size=0, max_size=6))
def test_text_lines_are_taken_for_the_first_format_of_their_shape_that_matches(example: str, head: str) -> None:
    """The parser looks its candidate formats up in tables by first and fifth character;
    they must give line_shape's candidates, in TEXT_PARSERS order, for any line."""
    for line in (example, head + example, head + example[len(head) :]):
        if line and line[0] not in " \t":
            assert LineParser("p", "svc")._parse_text(line) == _first_format_taking(line)


def _reference_micros(text: str) -> int | None:
    """What the wire should carry for an ISO time: the datetime's own arithmetic, naive read as UTC."""
    try:
        ts = datetime.fromisoformat(text.replace(",", ".", 1))
    except ValueError:
        return None
    micros = micros_of(ts if ts.tzinfo else ts.replace(tzinfo=UTC))
    return micros if MIN_MICROS <= micros <= MAX_MICROS else None


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)),
    st.sampled_from(["T", " "]),
    st.integers(min_value=0, max_value=7),
    st.sampled_from([".", ","]),
    st.sampled_from(["", "Z", "+00:00", "+01:00", "-05:30", "x", " Z"]),
)
# The ends of datetime's range, which a receiver could not make a datetime of: no time.
@example(datetime(1, 1, 1), "T", 3, ".", "Z")
@example(datetime(9999, 12, 31, 23, 59, 59, 999999), " ", 6, ",", "")
@example(datetime(1, 1, 1), "T", 0, ".", "+01:00")  # before UTC's year 1: astimezone overflowed
@example(datetime(9999, 12, 31, 23, 59, 59), "T", 0, ".", "-05:30")  # after 9999
def test_iso_times_in_microseconds_match_datetime_arithmetic(
    moment: datetime, sep: str, digits: int, mark: str, zone: str
) -> None:
    """micros_from_iso answers the common shapes from a cache of whole seconds; the first
    call (a full parse) and the second (maybe cached) must both give the reference."""
    text = moment.isoformat(sep, "seconds")
    if digits:
        text += mark + f"{moment.microsecond:06d}{moment.microsecond % 10}"[:digits]
    text += zone
    assert micros_from_iso(text) == _reference_micros(text)
    assert micros_from_iso(text) == _reference_micros(text)


parser_rows = st.builds(
    lambda rid, micros, level, service, message, trace_id, attrs: [
        rid,
        micros,
        level,
        service,
        message,
        trace_id,
        attrs,
    ],
    st.text(),
    st.integers(MIN_MICROS, MAX_MICROS),
    st.sampled_from(list(Level)),
    st.text(),
    st.text(),
    st.none() | st.text(),
    st.dictionaries(st.text(), json_values, max_size=6),
)


@settings(max_examples=500, deadline=None)
@given(parser_rows)
def test_rows_of_parsers_encode_to_the_bytes_msgpack_writes(row: list[object]) -> None:
    """pack_parsed (msgspec's encoder) and pack (msgpack's) must agree byte for byte on
    the rows parsers make: the wire format is msgpack's."""
    packer = RowPacker("msgpack")
    assert packer.pack_parsed([row, row]) == [packer.pack(row)] * 2
