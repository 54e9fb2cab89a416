"""The wire format: batches of records in a small versioned envelope.

Envelope (msgpack, or JSON with ``--serializer json``)::

    {"v": 1, "sources": {prefix: path, ...}, "records": [[id, ts, level, service, message, trace_id, attrs], ...]}

``ts`` is an integer: microseconds since the Unix epoch, UTC. ``level`` is one of
TRACE DEBUG INFO WARN ERROR FATAL. ``trace_id`` is a string or nil; ``attrs`` a map.
Bodies published by other tools (plain text, one JSON object, or the original design's
Protobuf ``LogEntry``) decode to one record each; see ``foreign_prefix`` for their ids.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, cast, get_args

import msgpack
import msgspec
import orjson

from logctl.errors import BadInput
from logctl.parsing import LineParser
from logctl.parsing.fields import level_from_word
from logctl.records import (
    LEVEL_OF_NAME,
    MAX_MICROS,
    MIN_MICROS,
    Level,
    LogRecord,
    WireRow,
    id_format,
    micros_of,
    now_utc,
    record_of,
    wire_row,
)

VERSION = 1
MSGPACK_TYPE = "application/vnd.logctl.batch+msgpack"
JSON_TYPE = "application/vnd.logctl.batch+json"
PROTOBUF_TYPE = "application/x-protobuf"  # the original design's LogEntry, one per message (see logentry.py)
FOREIGN_SERVICE = "external"


def _default(value: object) -> object:
    """Make what msgpack/orjson cannot encode natively encodable (mappings, tuples, others as text)."""
    if isinstance(value, dict):
        return value
    if hasattr(value, "items"):
        return dict(value.items())
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class RowPacker:
    """Encode records one at a time as wire rows, and rows into an envelope.

    A batch is the concatenation of its rows behind a small header, so rows can be
    packed wherever the records are parsed (a worker process, say) and joined later.
    """

    def __init__(self, serializer: str = "msgpack") -> None:
        self.json = serializer == "json"
        self.content_type = JSON_TYPE if self.json else MSGPACK_TYPE
        self._packer = msgpack.Packer(default=_default, use_bin_type=True)
        self._encode_parsed = msgspec.msgpack.Encoder().encode
        # Everything of the msgpack envelope before the records' array header.
        self._head: bytes = msgpack.packb({"v": VERSION, "records": []})[:-1]

    def pack(self, row: WireRow) -> bytes:
        """Return one wire row encoded."""
        if self.json:
            return orjson.dumps(row, default=_default) + b","  # so that rows just concatenate
        packed: bytes = self._packer.pack(row)
        return packed

    def pack_parsed(self, rows: list[WireRow]) -> list[bytes]:
        """Encode the rows of parsers, which hold only JSON types and Levels, one by one.

        For msgpack, msgspec's encoder runs over the list in C: it writes the same bytes
        as ``pack`` for such rows (a property test checks) in half the time. It refuses an
        integer beyond 64 bits (a parser makes one of a long digit run), which ``pack``
        writes as text: then the list goes through ``pack``.
        """
        if not self.json:
            try:
                return list(map(self._encode_parsed, rows))
            except OverflowError:
                pass
        return list(map(self.pack, rows))

    def envelope(
        self, rows: Sequence[bytes | memoryview], count: int | None = None, sources: Mapping[str, str] | None = None
    ) -> bytes:
        """Return the body of a batch of encoded rows (``count`` of them, when items hold several).

        ``sources`` maps the id prefix of each file among the rows to its path: a reader
        puts the path in each of its records' attrs (``log.file.path``), and the path
        travels once a batch rather than once a record.
        """
        if self.json:
            head = b'{"v":%d,' % VERSION + (b'"sources":%s,' % orjson.dumps(sources) if sources else b"")
            return head + b'"records":[' + b"".join(rows)[:-1] + b"]}"  # without the last comma
        header: bytes = self._packer.pack_array_header(len(rows) if count is None else count)
        if sources:
            head = self._packer.pack_map_header(3) + self._packer.pack("v") + self._packer.pack(VERSION)
            head += self._packer.pack("sources") + self._packer.pack(dict(sources)) + self._packer.pack("records")
            return b"".join((head, header, *rows))
        return b"".join((self._head, header, *rows))  # one copy of the rows, not two


def encode(records: Sequence[LogRecord], serializer: str = "msgpack") -> tuple[bytes, str]:
    """Return (body, content_type) of one batch of records."""
    packer = RowPacker(serializer)
    return packer.envelope([packer.pack(wire_row(r)) for r in records]), packer.content_type


# The envelope as a type msgspec checks while it decodes, in C: half the time of msgpack's
# decoding and a check of each row in Python (consume and tail decode every record). Rows
# come out as tuples, their levels as text.
LevelName = Literal["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
if set(get_args(LevelName)) != set(LEVEL_OF_NAME):
    raise AssertionError("LevelName is not the names of Level")
_Row = tuple[
    str,  # id
    Annotated[int, msgspec.Meta(ge=MIN_MICROS, le=MAX_MICROS)],  # time
    LevelName,
    str,  # service
    str,  # message
    str | None,  # trace_id
    dict[Any, Any],  # attrs: keys of any type, as msgpack allows (see records.json_bytes)
]


class _Envelope(msgspec.Struct):
    v: Literal[1]  # VERSION
    records: list[_Row]
    sources: dict[str, str] = {}  # id prefix -> file path (readers before it ignore the key)


PATH_KEY = "log.file.path"  # the attr a record's file path is put in
_PREFIX = len("0123456789abcdef")


def _rows(envelope: _Envelope) -> list[WireRow]:
    rows = cast("list[WireRow]", envelope.records)  # a _Row is a WireRow; list[] is invariant
    sources = envelope.sources
    if sources:
        for row in rows:
            path = sources.get(row[0][:_PREFIX])
            if path is not None:
                row[6][PATH_KEY] = path
    return rows


_decode_msgpack = msgspec.msgpack.Decoder(_Envelope).decode
_decode_json = msgspec.json.Decoder(_Envelope).decode


# Ids of foreign messages that carry no message id: unique per delivery, and sorting in
# arrival order (a time, then a counter) so that sinks insert them as appends.
_PROCESS_TOKEN = os.urandom(4).hex()
_foreign_serial = itertools.count()
FLAG_INVALID_JSON = "logctl.invalid_json"
FLAG_INVALID_UTF8 = "logctl.invalid_utf8"  # the same flag ship sets on a line


def foreign_prefix(message_id: str | None) -> str:
    """Return the id prefix of a foreign message's record.

    With an AMQP message id the prefix derives from it, so a redelivery (or a republish
    of the same id) is dropped by the sinks: exactly once. Without one, nothing tells two
    deliveries of one message from two messages with the same body, so each delivery
    gets a new prefix: identical bodies are distinct events, and a redelivery after a
    crash may be stored twice (at-least-once; see the README's wire section).
    """
    if message_id:
        return hashlib.blake2b(b"amqp:" + message_id.encode(), digest_size=8).hexdigest()  # as before 0.2
    return f"amqp-{time.time_ns():016x}{_PROCESS_TOKEN}{next(_foreign_serial):08x}"


def routing_defaults(routing_key: str) -> tuple[str, Level]:
    """The service and level a ``service.level`` routing key names, for a body that names none.

    ``api.error`` is service ``api`` at ERROR. A key that has no dot, or whose last word
    is no level name of three letters or more, names neither: ``external`` at INFO.
    """
    service, dot, last = routing_key.rpartition(".")
    level = level_from_word(last) if dot and len(last) >= 3 else None  # not 'a.b.c' as critical
    if level is None:
        return FOREIGN_SERVICE, Level.INFO
    return (service or FOREIGN_SERVICE), level


def decode_foreign(
    body: bytes, message_id: str | None = None, content_type: str | None = None, routing_key: str = ""
) -> WireRow:
    """Return the one record (as a row) of a body another tool published (plain text or JSON).

    Its id is ``foreign_prefix(message_id)``; the service and level its body does not
    name come from a ``service.level`` routing key (``routing_defaults``). A body that claims to be JSON and is not
    becomes a text record flagged ``logctl.invalid_json``; invalid UTF-8 is replaced and
    flagged as ship flags it.
    """
    flags: dict[str, Any] = {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", "replace")
        flags[FLAG_INVALID_UTF8] = True
    text = text.rstrip("\r\n")
    if content_type is not None and content_type.split(";")[0].strip().lower() in _JSON_TYPES:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            flags[FLAG_INVALID_JSON] = True
    service, level = routing_defaults(routing_key)
    parser = LineParser(foreign_prefix(message_id), service, level=level)
    first, _, rest = text.partition("\n")
    parser.feed(first, 0, len(body), flags or None)
    for line in rest.split("\n") if rest else ():
        parser.feed(line, 0, len(body))
    row = parser.flush()
    assert row is not None  # a fed parser always holds a record
    return row


_JSON_TYPES = frozenset({"application/json", "text/json"})


def decode_rows(
    body: bytes, content_type: str | None, message_id: str | None = None, routing_key: str = ""
) -> list[WireRow]:
    """Return the checked wire rows of one AMQP message body; BadInput if it claims to be ours and is not."""
    try:
        if content_type == MSGPACK_TYPE:
            return _rows(_decode_msgpack(body))
        if content_type == JSON_TYPE:
            return _rows(_decode_json(body))
    except (ValueError, RecursionError) as exc:  # msgspec's errors are ValueErrors; nesting too deep
        raise BadInput(f"cannot decode {content_type} body: {exc}") from exc
    if content_type == PROTOBUF_TYPE:
        from logctl.logentry import decode_log_entry  # protobuf loads only for those who send it

        record_id = id_format(foreign_prefix(message_id)) % 0
        return [decode_log_entry(body, record_id, micros_of(now_utc()), *routing_defaults(routing_key))]
    return [decode_foreign(body, message_id, content_type, routing_key)]


def decode(body: bytes, content_type: str | None, message_id: str | None = None) -> list[LogRecord]:
    """Return the records of one AMQP message body; BadInput if it claims to be ours and is not."""
    return [record_of(row) for row in decode_rows(body, content_type, message_id)]
