"""The intake's fast paths hold to the general ones: one orjson call for an NDJSON body,
and the record JSON's own keys read in one pass."""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given, settings
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
