"""The wire format: batches of records in a small versioned envelope.

Envelope (msgpack, or JSON with ``--serializer json``)::

    {"v": 1, "records": [[id, ts, level, service, message, trace_id, attrs], ...]}

``ts`` is an integer: microseconds since the Unix epoch, UTC. ``level`` is one of
TRACE DEBUG INFO WARN ERROR FATAL. ``trace_id`` is a string or nil; ``attrs`` a map.
Bodies published by other tools (plain text, or one JSON object) decode to one record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Annotated, Any, Literal, cast, get_args

import msgpack
import msgspec
import orjson

from logctl.errors import BadInput
from logctl.parsing import LineParser
from logctl.records import LEVEL_OF_NAME, MAX_MICROS, MIN_MICROS, LogRecord, WireRow, record_of, wire_row

VERSION = 1
MSGPACK_TYPE = "application/vnd.logctl.batch+msgpack"
JSON_TYPE = "application/vnd.logctl.batch+json"
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

    def envelope(self, rows: Sequence[bytes | memoryview], count: int | None = None) -> bytes:
        """Return the body of a batch of encoded rows (``count`` of them, when items hold several)."""
        if self.json:
            return b'{"v":%d,"records":[' % VERSION + b"".join(rows)[:-1] + b"]}"  # without the last comma
        header: bytes = self._packer.pack_array_header(len(rows) if count is None else count)
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


def _rows(envelope: _Envelope) -> list[WireRow]:
    return cast("list[WireRow]", envelope.records)  # a _Row is a WireRow; list[] is invariant


_decode_msgpack = msgspec.msgpack.Decoder(_Envelope).decode
_decode_json = msgspec.json.Decoder(_Envelope).decode


def decode_foreign(body: bytes, message_id: str | None = None) -> WireRow:
    """Return the one record (as a row) of a body another tool published (plain text or JSON).

    Its id comes from the AMQP message id when there is one, else from the body, so a
    redelivery of the same message is still recognised as a duplicate.
    """
    identity = message_id.encode() if message_id else body
    prefix = hashlib.blake2b(b"amqp:" + identity, digest_size=8).hexdigest()
    text = body.decode("utf-8", "replace").rstrip("\r\n")
    parser = LineParser(prefix, FOREIGN_SERVICE)
    first, _, rest = text.partition("\n")
    parser.feed(first, 0, len(body))
    for line in rest.split("\n") if rest else ():
        parser.feed(line, 0, len(body))
    row = parser.flush()
    assert row is not None  # a fed parser always holds a record
    return row


def decode_rows(body: bytes, content_type: str | None, message_id: str | None = None) -> list[WireRow]:
    """Return the checked wire rows of one AMQP message body; BadInput if it claims to be ours and is not."""
    try:
        if content_type == MSGPACK_TYPE:
            return _rows(_decode_msgpack(body))
        if content_type == JSON_TYPE:
            return _rows(_decode_json(body))
    except (ValueError, RecursionError) as exc:  # msgspec's errors are ValueErrors; nesting too deep
        raise BadInput(f"cannot decode {content_type} body: {exc}") from exc
    return [decode_foreign(body, message_id)]


def decode(body: bytes, content_type: str | None, message_id: str | None = None) -> list[LogRecord]:
    """Return the records of one AMQP message body; BadInput if it claims to be ours and is not."""
    return [record_of(row) for row in decode_rows(body, content_type, message_id)]
