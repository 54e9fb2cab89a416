"""The intake's fast paths hold to the general ones: one orjson call for an NDJSON body,
and the record JSON's own keys read in one pass."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st

from logctl.intake import _as_one_array, _canonical, _objects, _schema_error
from logctl.parsing.fields import parsed_from_mapping

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2_000_000_000),
    st.sampled_from(["info", "WARN", "loud", "", "3", "2026-12-03T10:00:00Z", "1764763200", "18ms", "svc", "a b"]),
    st.sampled_from(["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "projects/p/traces/abc"]),
    st.text(max_size=8),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=2),  # what orjson reads from a body
)
RECORDS = st.dictionaries(st.sampled_from(["message", "level", "service", "trace_id", "timestamp"]), VALUES)


def general(obj: dict[str, Any]) -> Any:
    error = _schema_error(obj)
    return error if error is not None else parsed_from_mapping(obj, "")


@settings(max_examples=800, deadline=None)
@given(RECORDS)
def test_the_record_jsons_own_keys_read_in_one_pass_as_the_general_path_reads_them(obj: dict[str, Any]) -> None:
    assert _canonical(copy.deepcopy(obj)) == general(copy.deepcopy(obj))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.text(max_size=4), st.integers(-(2**63), 2**63 - 1) | st.text(max_size=4), max_size=3),
        max_size=6,
    )
)
def test_an_ndjson_body_as_one_array_gives_the_objects_line_by_line(objects: list[dict[str, Any]]) -> None:
    body = b"".join(orjson.dumps(o) + b"\n" for o in objects)
    line_by_line = [orjson.loads(line) for line in body.split(b"\n") if line.strip()]
    assert [value for _i, value in _objects(body, "application/x-ndjson")] == line_by_line


def test_bodies_that_are_not_one_object_a_line_take_the_line_by_line_path() -> None:
    for body in (b'{"a":1}\n\n{"b":2}', b'{"a":1},{"b":2}\n{"c":1}', b"[1]\n{}", b'{"a":\n1}', b"1\n2"):
        assert _as_one_array(body) is None, body
    assert _as_one_array(b'{"a":1}\r\n{"b":2}\r\n') == [{"a": 1}, {"b": 2}]


TYPED_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2_000_000_000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["info", "WARN", "loud", "", "3", "2026-12-03T10:00:00Z", "1764763200", "18ms", "svc", "t-1"]),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 9), max_size=2),
)
TYPED = st.one_of(
    st.dictionaries(
        st.sampled_from(["message", "level", "service", "trace_id", "timestamp", "id", "attrs", "msg"]), TYPED_VALUES
    ),
    # mostly records the fast path takes, with a bad value here and there
    st.fixed_dictionaries(
        {"message": st.text(min_size=1, max_size=5)},
        optional={
            "level": st.sampled_from(["info", "WARN", "error", "Debug", 30, 5, "loud", ""]),
            "service": st.sampled_from(["api", "svc-1", "9x", ""]),
            "trace_id": st.sampled_from(
                ["t-1", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "projects/p/traces/abc", ""]
            ),
            "timestamp": st.sampled_from(["2026-12-03T10:00:00Z", 1764763200, 1764763200.5, "nope", "2026-12-03"]),
            "id": st.sampled_from(["", "x1"]),
            "attrs": st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 9) | st.text(max_size=3), max_size=2),
        },
    ),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(TYPED, min_size=1, max_size=4), st.booleans())
def test_typed_bodies_give_the_rows_of_the_general_path(objects: list[dict[str, Any]], as_array: bool) -> None:
    """msgspec's typed decoding (``_typed_rows``) takes a body only where it makes the general path's rows."""
    from logctl.intake import BadBody, _row, _typed_rows

    if as_array:
        body, media_type = orjson.dumps(objects), "application/json"
    else:
        body, media_type = b"".join(orjson.dumps(o) + b"\n" for o in objects), "application/x-ndjson"
    typed = _typed_rows(body, media_type, "p-%012x", 7, "http")
    event("typed" if typed is not None else "general")  # hypothesis --hypothesis-show-statistics
    if typed is None:
        return  # the general path reads it, as before
    general = []
    for index, value in _objects(body, media_type):
        assert not isinstance(value, BadBody)
        row = _row(value, f"p-{index:012x}", 7, "http")  # type: ignore[arg-type]
        assert not isinstance(row, str), row
        general.append(row)
    assert typed == general


def test_a_plain_body_takes_the_typed_path() -> None:
    from logctl.intake import _typed_rows

    body = b'{"message":"a","level":"warn","service":"api","trace_id":"t1"}\n{"message":"b","timestamp":1764763200}\n'
    rows = _typed_rows(body, "application/x-ndjson", "p-%012x", 7, "http")
    assert rows is not None and [r[4] for r in rows] == ["a", "b"] and rows[1][1] == 1764763200_000000
