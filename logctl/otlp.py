"""OpenTelemetry logs (OTLP/HTTP ``POST /v1/logs``) into wire rows: protobuf and JSON bodies.

The protobuf body is decoded by the official generated classes (``opentelemetry-proto``),
the JSON one by the OTLP/JSON mapping (lowerCamelCase keys, trace and span ids in hex,
64-bit integers as text or numbers, enums as numbers). Both go through one mapping:

- ``service.name`` of the resource is the service; its other attributes go to
  ``attrs.resource``, the scope's name and version to ``attrs["otel.scope"]``;
- ``severity_number`` gives the level (1-4 TRACE ... 21-24 FATAL), else ``severity_text``;
- ``time_unix_nano``, else ``observed_time_unix_nano``, else the time it was read (flagged,
  as the parser flags a line without a time);
- the body is the message: a string as it is, any other AnyValue as its JSON text;
- the attributes go to attrs, the span id to ``attrs.span_id``, the trace id to trace_id.

Record ids come from a hash of the body: an exporter that retries an export (after a 503,
a timeout) sends the same body again, and the sinks store its records once.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

from logctl.parsing.fields import level_from_severity_number, level_from_word
from logctl.parsing.lines import READ_TIME_KEY
from logctl.records import MAX_MICROS, MIN_MICROS, Level, WireRow, id_format, micros_of, now_utc

PROTOBUF_TYPE = "application/x-protobuf"
JSON_TYPE = "application/json"
INVALID_ARGUMENT = 3  # google.rpc.Code, in the Status of a 400


class BadExport(Exception):
    """A body that is no ExportLogsServiceRequest: answered 400 with a google.rpc.Status."""


def export_prefix(body: bytes, token_name: str) -> str:
    """The record-id prefix of an export: the same body (a retry) gives the same ids."""
    return hashlib.blake2b(b"otlp:" + token_name.encode() + b":" + body, digest_size=8).hexdigest()


def rows_of_export(body: bytes, media_type: str, service: str, prefix: str) -> tuple[list[WireRow], int, str]:
    """The records of an export, how many were rejected and why (OTLP's partial success)."""
    records = _from_protobuf(body) if media_type == PROTOBUF_TYPE else _from_json(body)
    ids = id_format(prefix)
    now = micros_of(now_utc())
    rows: list[WireRow] = []
    rejected = 0
    for index, record in enumerate(records):
        row = _row(record, ids % index, now, service)
        if row is None:
            rejected += 1
        else:
            rows.append(row)
    reason = f"{rejected} log record(s) had no body, attributes or event name" if rejected else ""
    return rows, rejected, reason


def response_body(media_type: str, rejected: int, reason: str) -> bytes:
    """ExportLogsServiceResponse, in the request's encoding; partial_success only if something was rejected."""
    if media_type == PROTOBUF_TYPE:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

        response = ExportLogsServiceResponse()
        if rejected:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = reason
        return response.SerializeToString()
    if not rejected:
        return b"{}"
    return orjson.dumps({"partialSuccess": {"rejectedLogRecords": rejected, "errorMessage": reason}})


def status_body(media_type: str, message: str) -> bytes:
    """A google.rpc.Status (code INVALID_ARGUMENT), the body OTLP gives a 400."""
    if media_type == PROTOBUF_TYPE:
        text = message.encode()
        return b"\x08" + bytes([INVALID_ARGUMENT]) + b"\x12" + _varint(len(text)) + text
    return orjson.dumps({"code": INVALID_ARGUMENT, "message": message})


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


# --- one record, whichever the encoding -------------------------------------------------------


class _Record:
    __slots__ = ("attrs", "body", "event", "observed", "resource", "scope", "severity", "span", "text", "time", "trace")

    def __init__(self) -> None:
        self.resource: dict[str, Any] = {}
        self.scope: dict[str, str] = {}
        self.time = self.observed = self.severity = 0
        self.text = self.trace = self.span = self.event = ""
        self.body: Any = None
        self.attrs: dict[str, Any] = {}


def _row(record: _Record, rid: str, now: int, default_service: str) -> WireRow | None:
    if record.body is None and not record.attrs and not record.event:
        return None
    attrs = dict(record.attrs)
    resource = dict(record.resource)
    service = resource.pop("service.name", None)
    if resource:
        attrs["resource"] = resource
    if record.scope:
        attrs["otel.scope"] = record.scope
    if record.span and record.span.strip("0"):
        attrs["span_id"] = record.span
    if record.event:
        attrs["event.name"] = record.event
    nanos = record.time or record.observed
    micros = nanos // 1000 if nanos else None
    if micros is None or not MIN_MICROS <= micros <= MAX_MICROS:
        micros = now
        attrs[READ_TIME_KEY] = True
    level = level_from_severity_number(record.severity) if record.severity else None
    if level is None and record.text:
        level = level_from_word(record.text)
    body = record.body
    message = body if isinstance(body, str) else "" if body is None else orjson.dumps(body, default=str).decode()
    trace = record.trace if record.trace and record.trace.strip("0") else None
    return [
        rid,
        micros,
        level or Level.INFO,
        str(service) if service else default_service,
        message or record.event,
        trace,
        attrs,
    ]


# --- protobuf ---------------------------------------------------------------------------------


def _from_protobuf(body: bytes) -> Iterator[_Record]:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BadExport(f"the body is no protobuf ExportLogsServiceRequest: {exc}") from None
    for resource_logs in request.resource_logs:
        resource = {kv.key: _pb_value(kv.value) for kv in resource_logs.resource.attributes}
        for scope_logs in resource_logs.scope_logs:
            scope = _scope_of(scope_logs.scope.name, scope_logs.scope.version)
            for log in scope_logs.log_records:
                record = _Record()
                record.resource, record.scope = resource, scope
                record.time, record.observed = log.time_unix_nano, log.observed_time_unix_nano
                record.severity, record.text = log.severity_number, log.severity_text
                record.body = _pb_value(log.body) if log.HasField("body") else None
                record.attrs = {kv.key: _pb_value(kv.value) for kv in log.attributes}
                record.trace, record.span = log.trace_id.hex(), log.span_id.hex()
                record.event = log.event_name
                yield record


def _pb_value(value: Any) -> Any:
    """An AnyValue as a plain value (bytes as base64 text, as OTLP/JSON writes them)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, kind)


# --- JSON -------------------------------------------------------------------------------------


def _from_json(body: bytes) -> Iterator[_Record]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadExport(f"the body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadExport("the body is no ExportLogsServiceRequest: a JSON object with resourceLogs")
    for resource_logs in _list(request, "resourceLogs"):
        resource = _attributes(_dict(resource_logs, "resource"))
        for scope_logs in _list(resource_logs, "scopeLogs"):
            scope_obj = _dict(scope_logs, "scope")
            scope = _scope_of(str(scope_obj.get("name") or ""), str(scope_obj.get("version") or ""))
            for log in _list(scope_logs, "logRecords"):
                record = _Record()
                record.resource, record.scope = resource, scope
                record.time, record.observed = _int(log.get("timeUnixNano")), _int(log.get("observedTimeUnixNano"))
                record.severity = _severity(log.get("severityNumber"))
                record.text = str(log.get("severityText") or "")
                record.body = _json_value(log["body"]) if isinstance(log.get("body"), dict) else None
                record.attrs = _attributes(log)
                record.trace = _hex_id(log.get("traceId"))
                record.span = _hex_id(log.get("spanId"))
                record.event = str(log.get("eventName") or "")
                yield record


def _list(obj: Any, key: str) -> list[dict[str, Any]]:
    found = obj.get(key) if isinstance(obj, dict) else None
    if found is None:
        return []
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise BadExport(f"{key} must be a list of objects")
    return found


def _dict(obj: dict[str, Any], key: str) -> dict[str, Any]:
    found = obj.get(key)
    return found if isinstance(found, dict) else {}


def _attributes(obj: dict[str, Any]) -> dict[str, Any]:
    return {str(kv.get("key")): _json_value(kv.get("value")) for kv in _list(obj, "attributes")}


def _json_value(value: Any) -> Any:
    if not isinstance(value, dict) or not value:
        return None
    kind, inner = next(iter(value.items()))
    if kind == "intValue":
        return _int(inner)
    if kind == "arrayValue":
        return [_json_value(v) for v in (inner or {}).get("values", [])]
    if kind == "kvlistValue":
        return _attributes({"attributes": (inner or {}).get("values", [])})
    return inner  # stringValue, boolValue, doubleValue, bytesValue (base64 text)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


def _severity(value: Any) -> int:
    if isinstance(value, str) and value.startswith("SEVERITY_NUMBER_"):
        names = ["UNSPECIFIED", "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4",
                 "INFO", "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3",
                 "ERROR4", "FATAL", "FATAL2", "FATAL3", "FATAL4"]  # fmt: skip
        name = value.removeprefix("SEVERITY_NUMBER_")
        return names.index(name) if name in names else 0
    return _int(value)


def _hex_id(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    text = value.strip().lower()
    return text if text and all(c in "0123456789abcdef" for c in text) else ""


def _scope_of(name: str, version: str) -> dict[str, str]:
    scope = {}
    if name:
        scope["name"] = name
    if version:
        scope["version"] = version
    return scope
