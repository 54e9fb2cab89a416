"""Normalising what loggers write: level names, timestamps, trace ids, field names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from logctl.records import EPOCH, Level

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


def level_from_word(word: str) -> Level | None:
    """Return the Level a logger meant by ``word`` (any case, synonyms and abbreviations)."""
    return _LEVEL_WORDS.get(word.strip().lower())


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


def time_from_epoch(value: float) -> datetime | None:
    """Return the time of an epoch number in s, ms, us or ns (told apart by size)."""
    try:
        if value > 1e17:
            return EPOCH + timedelta(microseconds=value / 1000)
        if value > 1e14:
            return EPOCH + timedelta(microseconds=value)
        if value > 1e11:
            return EPOCH + timedelta(milliseconds=value)
        if value > 0:
            return EPOCH + timedelta(seconds=value)
    except OverflowError:
        return None
    return None


def time_from_iso(text: str) -> datetime | None:
    """Return the UTC time of an ISO 8601 / RFC 3339 string; naive times are taken as UTC."""
    if "," in text:
        text = text.replace(",", ".", 1)
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    if ts.tzinfo is None:
        return _as_utc(text, ts)
    return ts if ts.tzinfo is UTC else ts.astimezone(UTC)


def _as_utc(text: str, naive: datetime) -> datetime:
    """Return a naive time as UTC. Parsing again with an offset costs a third of
    ``naive.replace(tzinfo=UTC)`` (a keyword call); a date alone needs the latter."""
    try:
        aware = datetime.fromisoformat(text + "+00:00")
    except ValueError:
        aware = None
    return aware if aware is not None and aware.tzinfo is UTC else naive.replace(tzinfo=UTC)


MONTHS = {
    m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)
}


def month_number(name: str) -> int | None:
    """Return 1..12 for an English month name or abbreviation."""
    return MONTHS.get(name[:3].lower())


def time_from_value(value: object) -> datetime | None:
    """Return the time of a JSON timestamp value: ISO string, epoch number, or GCP {seconds, nanos}."""
    if isinstance(value, str):
        if value and value[0].isdigit() and not value.replace(".", "", 1).isdigit():
            return time_from_iso(value)
        try:
            return time_from_epoch(float(value))
        except ValueError:
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return time_from_epoch(float(value))
    if isinstance(value, dict) and "seconds" in value:
        try:
            return time_from_epoch(float(value["seconds"]) + float(value.get("nanos", 0)) / 1e9)
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


@dataclass(slots=True)
class Parsed:
    """What a parser found in one line; missing pieces are filled in by the LineParser."""

    message: str
    level: Level | None = None
    timestamp: datetime | None = None
    service: str | None = None
    trace_id: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


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
    level = timestamp = service = trace_id = message = None
    if plan.level is not None:
        level = level_from_value(obj[plan.level])
        if level is not None:
            del obj[plan.level]
    elif plan.nesting and isinstance(obj.get("log"), dict):
        level = level_from_value(_take_nested(obj, "log", "level"))
    if plan.time is not None:
        timestamp = time_from_value(obj[plan.time])
        if timestamp is not None:
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
    return Parsed(raw if message is None else message, level, timestamp, service, trace_id, obj)


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
