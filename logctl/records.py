"""The record model: what one log record is, wherever it came from."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson


class Level(StrEnum):
    """Severity, lowest first. ``Level.rank`` orders them."""

    TRACE = "TRACE"
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    FATAL = "FATAL"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def at_least(self) -> list[Level]:
        """Return this level and every more severe one."""
        return [lvl for lvl in Level if lvl.rank >= self.rank]


_RANK = {lvl: i for i, lvl in enumerate(Level)}


@dataclass(slots=True)
class LogRecord:
    """One structured log record; treat it as immutable.

    ``id`` is stable: the same bytes of the same source always give the same id, so
    sinks that key on it drop redeliveries and re-shipped lines.

    Not ``frozen``: a frozen dataclass's __init__ costs 3x (1.6 vs 0.5 us), paid once
    per line on the ship hot path.
    """

    id: str
    timestamp: datetime
    level: Level
    service: str
    message: str
    trace_id: str | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        """Return ``<service>.<level>`` with the service made safe for topic routing."""
        return routing_key(self.service, self.level)


_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")


def routing_word(text: str) -> str:
    """Return ``text`` as one topic-routing word: no dots, no wildcards, never empty."""
    word = _UNSAFE.sub("_", text).strip("_").lower()
    return word[:100] or "unknown"


@functools.lru_cache(maxsize=4096)  # once per record on ship's hot path; few distinct pairs
def routing_key(service: str, level: Level) -> str:
    """Return the routing key ``<service>.<level>`` of a record."""
    return f"{routing_word(service)}.{level.value.lower()}"


def source_prefix(identity: bytes) -> str:
    """Return the 16-hex-digit id prefix of a source identity."""
    return hashlib.blake2b(identity, digest_size=8).hexdigest()


def id_format(prefix: str) -> str:
    """Return the %-format of the record ids of a source: ``id_format(prefix) % offset`` is
    the id of the record that starts at byte ``offset``.

    Zero-padded so that ids of one source sort in the order they were written, which
    keeps B-tree inserts in the sinks sequential. A format made once per source rather
    than a function: a parser makes an id per line.
    """
    return prefix.replace("%", "%%") + "-%012x"


def now_utc() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)  # the wire's unit of time


def micros_of(ts: datetime) -> int:
    """Return a time as microseconds since the epoch (the wire's form), exactly."""
    return (ts - EPOCH) // MICROSECOND  # timedelta arithmetic is integral: no float rounding


# The times on the wire: what a datetime holds in any time zone (a day inside year 1 to
# 9999), so that every receiver can make a datetime of it. Parsers treat others as no time.
MIN_MICROS = micros_of(datetime(1, 1, 2, tzinfo=UTC))
MAX_MICROS = micros_of(datetime(9999, 12, 30, tzinfo=UTC))


_SECOND_TEXT: dict[int, str] = {}
_MILLIS_TEXT = tuple(".%03dZ" % ms for ms in range(1000))  # noqa: UP031 - the suffix of each millisecond


def format_micros(micros: int) -> str:
    """Return RFC 3339 UTC with milliseconds (``2026-11-27T11:32:10.123Z``) of a time in microseconds.

    The text of each second is made once: consume, tail and --dry-run format every
    record's time, and a busy second holds thousands of records.
    """
    second, fraction = divmod(micros, 1_000_000)
    text = _SECOND_TEXT.get(second)
    if text is None:
        if len(_SECOND_TEXT) >= 4096:
            _SECOND_TEXT.clear()
        text = _SECOND_TEXT[second] = (EPOCH + timedelta(0, second)).replace(tzinfo=None).isoformat()
    return text + _MILLIS_TEXT[fraction // 1000]  # half the cost of formatting the suffix


def format_timestamp(ts: datetime) -> str:
    """Return RFC 3339 UTC with milliseconds: ``2026-11-27T11:32:10.123Z``."""
    return format_micros(micros_of(ts))


def json_record(
    rid: str, micros: int, level: str, service: str, message: str, trace_id: str | None, attrs: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the JSON Lines shape of a record's fields (keys documented in the README).

    The arguments come in the wire row's order, so ``json_record(*row)`` serves a wire row.
    """
    return {
        "id": rid,
        "timestamp": format_micros(micros),
        "level": level,
        "service": service,
        "message": message,
        "trace_id": trace_id,
        "attrs": attrs,
    }


# A record as parsers make it and as it travels: [id, ts, level, service, message,
# trace_id, attrs], ``ts`` in microseconds since the epoch. A sequence, not a LogRecord:
# ship makes a list per line, which msgpack encodes as it is; rows decoded from the wire
# (and checked, codec.py) are tuples. Parsers put a Level in ``level``, decoded rows its
# text: Level is a str enum, so both read as text.
WireRow = Sequence[Any]
ROW_ID, ROW_LEVEL, ROW_SERVICE = 0, 2, 3

LEVEL_OF_NAME = {lvl.value: lvl for lvl in Level}


def wire_row(record: LogRecord) -> WireRow:
    """Return a record in its wire form."""
    r = record
    return [r.id, micros_of(r.timestamp), r.level, r.service, r.message, r.trace_id, r.attrs]


def record_of(row: WireRow) -> LogRecord:
    """Return the record of a (checked) wire row."""
    rid, micros, level, service, message, trace_id, attrs = row
    return LogRecord(rid, EPOCH + timedelta(0, 0, micros), LEVEL_OF_NAME[level], service, message, trace_id, attrs)


def json_bytes(value: Any, option: int = 0) -> bytes:
    """Return ``orjson.dumps(value)`` of a record's parts; what JSON cannot hold is made text.

    A record from the wire may hold what no parser makes: map keys that are not text
    (msgpack allows any key), integers beyond 64 bits (JSON bodies may hold them) or maps
    nested deeper than orjson goes. Such a record is stored and shown with those parts
    as text, rather than stopping consume or tail at it again and again. Other values
    orjson does not know are text too.
    """
    try:
        return orjson.dumps(value, default=str, option=option)
    except orjson.JSONEncodeError:
        return orjson.dumps(_jsonable(value, 0), default=str, option=option)


_JSON_DEPTH = 200  # orjson stops at 255 levels of nesting
_JSON_INTS = range(-(2**63), 2**64)  # what orjson writes as numbers


def _jsonable(value: Any, depth: int) -> Any:
    """Return ``value`` with every map key made text, and big integers and what nests too deep as text."""
    if isinstance(value, dict | list | tuple) and depth >= _JSON_DEPTH:
        return str(value)
    if isinstance(value, int) and value not in _JSON_INTS:
        return str(value)
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(key): _jsonable(v, depth + 1) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    return value


def record_to_dict(record: LogRecord) -> dict[str, Any]:
    """Return the JSON Lines shape of a record."""
    r = record
    return json_record(r.id, micros_of(r.timestamp), r.level.value, r.service, r.message, r.trace_id, dict(r.attrs))
