"""The original design's ``LogEntry`` messages (Protobuf, ``application/x-protobuf``).

Services that already publish that schema (``logctl/proto/logentry.proto``) can be
drained by consume and shown by tail. The message class is built from the schema at
import time with the protobuf runtime, so no generated code needs to be kept in step.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from logctl.errors import BadInput
from logctl.parsing.fields import level_from_value
from logctl.records import MAX_MICROS, MIN_MICROS, Level, WireRow

_FIELDS = (
    ("timestamp", 1, "TYPE_INT64"),
    ("level", 2, "TYPE_STRING"),
    ("service", 3, "TYPE_STRING"),
    ("message", 4, "TYPE_STRING"),
    ("trace_id", 5, "TYPE_STRING"),
)


def _message_class() -> Any:
    proto = descriptor_pb2.FileDescriptorProto(name="logctl/logentry.proto", package="logctl", syntax="proto3")
    entry = proto.message_type.add(name="LogEntry")
    for name, number, kind in _FIELDS:
        entry.field.add(
            name=name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.Type.Value(kind),
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("logctl.LogEntry"))


LogEntry = _message_class()


def decode_log_entry(
    body: bytes, record_id: str, now_micros: int, default_service: str, default_level: Level = Level.INFO
) -> WireRow:
    """Return the one record of a LogEntry body; BadInput if it is not one."""
    entry = LogEntry()
    try:
        entry.ParseFromString(body)
    except DecodeError as exc:
        raise BadInput(f"cannot decode application/x-protobuf body as a LogEntry: {exc}") from exc
    micros = entry.timestamp * 1000 if entry.timestamp else now_micros
    attrs: dict[str, Any] = {}
    if not MIN_MICROS <= micros <= MAX_MICROS:
        attrs["logctl.bad_timestamp"] = entry.timestamp
        micros = now_micros
    level = level_from_value(entry.level) if entry.level else None
    if entry.level and level is None:
        attrs["level"] = entry.level
    return [
        record_id,
        micros,
        level or default_level,
        entry.service or default_service,
        entry.message,
        entry.trace_id or None,
        attrs,
    ]
