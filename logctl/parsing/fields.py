"""Normalising what loggers write: level names, timestamps, trace ids, field names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from logctl.records import EPOCH, MAX_MICROS, MICROSECOND, MIN_MICROS, Level

_LEVEL_WORDS: dict[str, Level] = {}
for _level, _words in {
    Level.TRACE: "trace trc finest finer verbose",
    Level.DEBUG: "debug dbg dbug debug1 debug2 debug3 debug4 debug5 fine config d",
    Level.INFO: "info inf information informational notice note log default i n",
    Level.WARN: "warn warning wrn wrng warnings w",
    Level.ERROR: "error err eror erro errors severe e",
    Level.FATAL: "fatal crit critical panic dpanic alert emerg emergency ftl fat f u a c",
}.items():
    for _word in _words.split():
        _LEVEL_WORDS[_word] = _level

# Syslog severity 0..7 (RFC 5424 section 6.2.1).
SYSLOG_SEVERITY = (Level.FATAL, Level.FATAL, Level.FATAL, Level.ERROR, Level.WARN, Level.INFO, Level.INFO, Level.DEBUG)


# The words as loggers mostly write them (lower, UPPER, Title case): found as they are.
_LEVEL_AS_WRITTEN = {form: level for word, level in _LEVEL_WORDS.items() for form in (word, word.upper(), word.title())}


def level_from_word(word: str) -> Level | None:
    """Return the Level a logger meant by ``word`` (any case, synonyms and abbreviations)."""
    return _LEVEL_AS_WRITTEN.get(word) or _LEVEL_WORDS.get(word.strip().lower())


def level_from_number(number: int) -> Level:
    """Return the Level of a pino/bunyan numeric level (10 trace ... 60 fatal)."""
    if number >= 60:
        return Level.FATAL
    if number >= 50:
        return Level.ERROR
    if number >= 40:
        return Level.WARN
    if number >= 30:
        return Level.INFO
    if number >= 20:
        return Level.DEBUG
    return Level.TRACE


def level_from_value(value: object) -> Level | None:
    """Return the Level of a JSON/logfmt level value: a word or a pino number."""
    if isinstance(value, str):
        found = level_from_word(value)
        if found is None and value.isdigit():
            return level_from_number(int(value))
        return found
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return level_from_number(int(value))
    return None


def level_from_http_status(status: int) -> Level:
    """Return the level of an access-log line from its HTTP status."""
    if status >= 500:
        return Level.ERROR
    if status >= 400:
        return Level.WARN
    return Level.INFO


def _in_range(micros: int) -> int | None:
    """Return ``micros`` if it is a time the wire carries (see records.MIN_MICROS), else None."""
    return micros if MIN_MICROS <= micros <= MAX_MICROS else None


def micros_from_epoch(value: float) -> int | None:
    """Return the time of an epoch number in s, ms, us or ns (told apart by size), in microseconds."""
    try:
        if value > 1e17:
            delta = timedelta(microseconds=value / 1000)
        elif value > 1e14:
            delta = timedelta(microseconds=value)
        elif value > 1e11:
            delta = timedelta(milliseconds=value)
        elif value > 0:
            delta = timedelta(seconds=value)
        else:
            return None
    except OverflowError:
        return None
    return _in_range(delta // MICROSECOND)  # rounded as datetime rounds, to the microsecond


# The microseconds of each whole second seen, by its text ("2026-11-27T11:32:10", or with a
# space), read as UTC. A second's text repeats on every line of that second, and a dict
# lookup is a third of the cost of the datetime arithmetic it saves.
_SECOND_MICROS: dict[str, int] = {}
_WHOLE_SECOND = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d", re.ASCII)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def micros_from_iso(text: str) -> int | None:
    """Return the time of an ISO 8601 / RFC 3339 string in microseconds; naive times are UTC."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    zone = ts.tzinfo
    if zone is None or zone is UTC:
        # text[:19] is a cached key only if it is the whole second this text starts with.
        second = _SECOND_MICROS.get(text[:19])
        if second is not None:
            return second + ts.microsecond
        _remember_second(text[:19])
    # Aware times subtract across their offset: no astimezone, which overflows at the ends.
    micros = (ts - (_NAIVE_EPOCH if zone is None else EPOCH)) // MICROSECOND
    return _in_range(micros)


def _remember_second(head: str) -> None:
    """Cache a whole second's text for micros_from_iso, if it is one and all of it is in range."""
    if not _WHOLE_SECOND.fullmatch(head):
        return
    try:
        second = (datetime.fromisoformat(head) - _NAIVE_EPOCH) // MICROSECOND
    except ValueError:  # cannot happen for the head of a valid time; never let it stop a parse
        return
    if MIN_MICROS <= second <= MAX_MICROS - 999_999:
        if len(_SECOND_MICROS) >= 4096:
            _SECOND_MICROS.clear()
        _SECOND_MICROS[head] = second


MONTHS = {
    m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)
}


def month_number(name: str) -> int | None:
    """Return 1..12 for an English month name or abbreviation."""
    return MONTHS.get(name[:3].lower())


def micros_from_value(value: object) -> int | None:
    """Return the time, in microseconds, of a JSON timestamp value: ISO string, epoch number,
    or GCP {seconds, nanos}."""
    if isinstance(value, str):
        if value[:1].isdigit() and (value[4:5] == "-" or not value.replace(".", "", 1).isdigit()):
            return micros_from_iso(value)
        try:
            return micros_from_epoch(float(value))
        except ValueError:
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return micros_from_epoch(float(value))
    if isinstance(value, dict) and "seconds" in value:
        try:
            return micros_from_epoch(float(value["seconds"]) + float(value.get("nanos", 0)) / 1e9)
        except (TypeError, ValueError):
            return None
    return None


_HEX32 = re.compile(r"[0-9a-fA-F]{32}")


def trace_from_value(key: str, value: object) -> str | None:
    """Return the trace id in ``value``: plain, W3C traceparent, or GCP ``projects/p/traces/ID``."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str) or not value:
        return None
    if key == "traceparent":
        parts = value.split("-")
        return parts[1] if len(parts) >= 3 and _HEX32.fullmatch(parts[1]) else None
    if "/traces/" in value:
        return value.rsplit("/", 1)[-1] or None
    return value


class Parsed(msgspec.Struct):
    """What a parser found in one line; missing pieces are filled in by the LineParser.

    A msgspec Struct rather than a dataclass: one is made per line, and this one is made
    in C (0.08 us against 0.19 for a dataclass's __init__).
    """

    message: str
    level: Level | None = None
    micros: int | None = None  # the time, in microseconds since the epoch (as on the wire)
    service: str | None = None
    trace_id: str | None = None
    attrs: dict[str, Any] = {}  # msgspec copies a mutable default for each instance
    # Whether a text format (not JSON or logfmt) took the line: with a time, its record
    # takes the unrecognised lines below it (a stack trace, a wrapped message).
    text: bool = False


TIME_KEYS = ("@timestamp", "timestamp", "time", "ts", "t", "date", "datetime", "asctime", "@t", "eventTime")
LEVEL_KEYS = ("level", "lvl", "severity", "levelname", "loglevel", "log.level", "level_name", "@l", "log_level")
MESSAGE_KEYS = ("msg", "message", "textPayload", "@m", "text", "log.message", "event")
SERVICE_KEYS = ("service", "service.name", "service_name", "app", "application", "appname", "app_name")
TRACE_KEYS = (
    "trace_id",
    "traceId",
    "traceid",
    "traceID",
    "trace.id",
    "dd.trace_id",
    "otelTraceID",
    "logging.googleapis.com/trace",
    "traceparent",
    "trace",
)


# Each known key's role and rank (lower wins when an object has several for one role).
_ROLES: dict[str, tuple[str, int]] = {}
for _role, _keys in (
    ("time", TIME_KEYS),
    ("level", LEVEL_KEYS),
    ("message", MESSAGE_KEYS),
    ("service", SERVICE_KEYS),
    ("trace", TRACE_KEYS),
):
    for _rank, _key in enumerate(_keys):
        _ROLES[_key] = (_role, _rank)


_ROLE_KEYS = frozenset(_ROLES)


def _take_nested(obj: dict[str, Any], outer: str, inner: str) -> Any:
    """Pop ``obj[outer][inner]`` (ECS style ``{"log": {"level": ...}}``), dropping an emptied parent."""
    parent = obj.get(outer)
    if isinstance(parent, dict) and inner in parent:
        value = parent.pop(inner)
        if not parent:
            del obj[outer]
        return value
    return None


def _roles_of(obj: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """One pass over the keys: for each role, the best-ranked key present."""
    found: dict[str, tuple[int, str]] = {}
    for key in _ROLE_KEYS.intersection(obj):  # a set operation in C, not a loop over every key
        role, rank = _ROLES[key]
        current = found.get(role)
        if current is None or rank < current[0]:
            found[role] = (rank, key)
    return found


# Keys under which a record's level, service or trace id may be nested (ECS, GCP, pino).
_NESTING_KEYS = frozenset(("log", "service", "serviceContext", "trace", "name"))


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which key holds each role in objects with a given set of keys (in order)."""

    level: str | None
    time: str | None
    service: str | None
    trace: str | None
    message: str | None
    nesting: bool  # whether a nested level, service or trace id must be looked for


_PLANS: dict[tuple[str, ...], _Plan] = {}


def _plan_of(obj: dict[str, Any]) -> _Plan:
    """Return the roles of the keys of ``obj``, worked out once per key set: a logger
    writes the same keys on every line."""
    keys = tuple(obj)
    plan = _PLANS.get(keys)
    if plan is None:
        found = _roles_of(obj)
        roles = {role: key for role, (_rank, key) in found.items()}
        plan = _Plan(
            roles.get("level"),
            roles.get("time"),
            roles.get("service"),
            roles.get("trace"),
            roles.get("message"),
            not _NESTING_KEYS.isdisjoint(keys),
        )
        if len(_PLANS) >= 4096:
            _PLANS.clear()
        _PLANS[keys] = plan
    return plan


def parsed_from_mapping(obj: dict[str, Any], raw: str) -> Parsed:
    """Map the fields of a structured line (JSON or logfmt) to a record; ``obj`` is consumed.

    A value that does not convert (a level of ``"banana"``) stays in attrs.
    """
    plan = _plan_of(obj)
    level = micros = service = trace_id = message = None
    if plan.level is not None:
        level = level_from_value(obj[plan.level])
        if level is not None:
            del obj[plan.level]
    elif plan.nesting and isinstance(obj.get("log"), dict):
        level = level_from_value(_take_nested(obj, "log", "level"))
    if plan.time is not None:
        micros = micros_from_value(obj[plan.time])
        if micros is not None:
            del obj[plan.time]
    if plan.service is not None:
        value = obj[plan.service]
        if isinstance(value, str) and value:
            service = value
            del obj[plan.service]
    if service is None and plan.nesting:
        service = _nested_service(obj)
    if plan.trace is not None:
        trace_id = trace_from_value(plan.trace, obj[plan.trace])
        if trace_id is not None:
            del obj[plan.trace]
    if trace_id is None and plan.nesting and isinstance(obj.get("trace"), dict):
        nested = _take_nested(obj, "trace", "id")
        trace_id = str(nested) if nested is not None else None
    if plan.message is not None:
        value = obj[plan.message]
        if isinstance(value, str):
            message = value
            del obj[plan.message]
    return Parsed(raw if message is None else message, level, micros, service, trace_id, obj)


def _nested_service(obj: dict[str, Any]) -> str | None:
    """ECS ``service.name``, GCP ``serviceContext.service``, or pino/bunyan's ``name``."""
    for outer, inner in (("service", "name"), ("serviceContext", "service")):
        if isinstance(obj.get(outer), dict):
            value = _take_nested(obj, outer, inner)
            if isinstance(value, str) and value:
                return value
    if "v" in obj and "pid" in obj and "hostname" in obj and isinstance(obj.get("name"), str):
        name: str = obj.pop("name")
        return name
    return None
