"""What the decoder takes from the wire and what it refuses (consume dead-letters those)."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import orjson
import pytest

from logctl.codec import JSON_TYPE, MSGPACK_TYPE, decode_rows
from logctl.errors import BadInput
from logctl.records import MAX_MICROS, MIN_MICROS, json_bytes
from logctl.render import json_lines

GOOD_ROW: list[Any] = ["src-000000000001", 1_795_000_000_000_000, "WARN", "api", "m", None, {"n": 1}]


def envelope(*rows: object, **extra: object) -> dict[str, object]:
    return {"v": 1, "records": list(rows), **extra}


def bodies(value: object) -> list[tuple[bytes, str]]:
    """The value as a body of each serializer."""
    return [(msgpack.packb(value, use_bin_type=True), MSGPACK_TYPE), (orjson.dumps(value), JSON_TYPE)]


def with_field(index: int, value: object) -> list[Any]:
    row = list(GOOD_ROW)
    row[index] = value
    return row


REFUSED = {
    "not a map": [GOOD_ROW],
    "version 2": {"v": 2, "records": [GOOD_ROW]},
    "no records": {"v": 1},
    "records not an array": {"v": 1, "records": {"a": GOOD_ROW}},
    "a row of 6": envelope(GOOD_ROW[:6]),
    "a row of 8": envelope([*GOOD_ROW, None]),
    "id not text": envelope(with_field(0, 7)),
    "time a bool": envelope(with_field(1, True)),
    "time a float": envelope(with_field(1, 1.5)),
    "time before year 1": envelope(with_field(1, MIN_MICROS - 1)),
    "time after 9999": envelope(with_field(1, MAX_MICROS + 1)),
    "unknown level": envelope(with_field(2, "NOTICE")),
    "level in lower case": envelope(with_field(2, "warn")),
    "service not text": envelope(with_field(3, None)),
    "message not text": envelope(with_field(4, ["m"])),
    "trace_id a number": envelope(with_field(5, 12)),
    "attrs a list": envelope(with_field(6, [1])),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_body_that_is_no_logctl_batch_is_refused(case: str) -> None:
    for body, content_type in bodies(REFUSED[case]):
        with pytest.raises(BadInput, match="cannot decode"):
            decode_rows(body, content_type)


@pytest.mark.parametrize(
    "body",
    [
        msgpack.packb(envelope(GOOD_ROW)) + b"\x00",  # trailing bytes
        msgpack.packb(envelope(GOOD_ROW))[:-3],  # cut short
        msgpack.packb(envelope(with_field(3, "api"))).replace(b"\xa3api", b"\xa3\xff\xfe\xfd"),  # not UTF-8
        msgpack.packb(envelope(with_field(6, {})))[:-1] + b"\x81\xa1x" + b"\x91" * 100_000 + b"\xc0",  # nested
        b"\xc1 not msgpack",
    ],
    ids=["trailing bytes", "cut short", "invalid UTF-8", "nested 100,000 deep", "junk"],
)
def test_a_broken_msgpack_body_is_refused(body: bytes) -> None:
    with pytest.raises(BadInput, match="cannot decode"):
        decode_rows(body, MSGPACK_TYPE)


def test_rows_decode_with_their_fields_as_they_travelled() -> None:
    rows = [GOOD_ROW, with_field(5, "4bf92f3577b34da6"), with_field(1, MIN_MICROS), with_field(1, MAX_MICROS)]
    for body, content_type in bodies(envelope(*rows, extra="ignored")):
        assert [list(row) for row in decode_rows(body, content_type)] == rows


def test_attrs_keys_that_json_cannot_hold_are_kept_and_shown_as_text() -> None:
    """msgpack allows map keys of any type; the record is kept, its keys made text when shown."""
    deep: object = "bottom"
    for _ in range(300):
        deep = {"d": deep}
    attrs = {1: "one", None: {2.5: [True]}, "deep": deep}
    body = msgpack.packb(envelope(with_field(6, attrs)), use_bin_type=True)
    (row,) = decode_rows(body, MSGPACK_TYPE)
    assert row[6] == attrs
    shown = json.loads(json_bytes(row[6]))
    assert shown["1"] == "one" and shown["None"] == {"2.5": [True]}
    assert isinstance(json.loads(json_lines([{"attrs": row[6]}]))["attrs"]["deep"]["d"], dict)
    assert json_bytes({"plain": [1, 2]}) == b'{"plain":[1,2]}'


def test_an_integer_beyond_64_bits_in_a_json_body_is_kept_and_shown_as_text() -> None:
    big = 123_456_789_012_345_678_901_234_567_890
    body = b'{"v":1,"records":[["a",1795000000000000,"INFO","api","m",null,{"n":%d,"l":[%d]}]]}' % (big, -big)
    (row,) = decode_rows(body, JSON_TYPE)
    assert row[6] == {"n": big, "l": [-big]}
    assert json.loads(json_bytes(row[6])) == {"n": str(big), "l": [str(-big)]}
    assert json_bytes({"edge": [2**64 - 1, -(2**63)]}) == b'{"edge":[18446744073709551615,-9223372036854775808]}'
