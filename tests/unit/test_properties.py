"""Hypothesis properties: the codec round-trips any record; reading any bytes never raises."""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from logctl.codec import decode, encode
from logctl.records import Level, LogRecord, record_of
from logctl.tailer import FileSource

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
        src = FileSource(fh.name, fd, os.fstat(fd), "fuzz", max_line)
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
        assert ends[-1] == len(data)  # every byte belongs to a record
        for row, _ in src.ready:
            record = record_of(row)
            body, content_type = encode([record])
            assert decode(body, content_type) == [record]
        src.close()
    finally:
        os.unlink(fh.name)
