"""Normalising what loggers write: level names, timestamps, trace ids, field names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import msgspec

from logctl.records import EPOCH, MAX_MICROS, MICROSECOND, MIN_MICROS, Level

_LEVEL_WORDS: dict[str, Level] = {}
for _level, _words in {
    Level.TRACE: "trace trc finest finer verbose vrb",
    Level.DEBUG: "debug dbg dbug debug1 debug2 debug3 debug4 debug5 fine config d d1 d2 d3 d4 d5",
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


_OFFSET = re.compile(r"([A-Za-z]+)[+-]\d+")


def level_from_word(word: str) -> Level | None:
    """Return the Level a logger meant by ``word`` (any case, synonyms and abbreviations).

    Go's slog writes a level between two named ones as an offset (``WARN+2``, ``DEBUG-4``):
    it is the level it is offset from.
    """
    found = _LEVEL_AS_WRITTEN.get(word) or _LEVEL_WORDS.get(word.strip().lower())
    if found is None and ("+" in word or "-" in word):
        offset = _OFFSET.fullmatch(word.strip())
        if offset:
            return _LEVEL_WORDS.get(offset.group(1).lower())
    return found


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


def level_from_severity_number(number: int) -> Level:
    """Return the Level of an OpenTelemetry SeverityNumber (1-4 TRACE ... 21-24 FATAL)."""
    levels = (Level.TRACE, Level.DEBUG, Level.INFO, Level.WARN, Level.ERROR, Level.FATAL)
    return levels[min(max(number - 1, 0) // 4, 5)]


def level_from_value(value: object, key: str = "") -> Level | None:
    """Return the Level of a JSON/logfmt level value: a word, or a number of its scheme.

    Numbers 0..7 are syslog severities (journald's PRIORITY, GELF's level), 10 and up
    pino/bunyan levels; under an OpenTelemetry key (``severity_number``) the 1..24 scale.
    """
    if isinstance(value, str):
        found = level_from_word(value)
        if found is None and value.isdigit():
            return level_from_value(int(value), key)
        return found
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = int(value)
        if key in _SEVERITY_NUMBER_KEYS:
            return level_from_severity_number(number)
        if 0 <= number <= 7:
            return SYSLOG_SEVERITY[number]
        return level_from_number(number)
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


# The zone zone-less stamps were written in (ship --timezone); None: UTC.
_LOCAL_ZONE: tzinfo | None = None


def set_local_zone(zone: tzinfo | None) -> None:
    """Read zone-less stamps as written in ``zone`` from now on, in this process (None: UTC)."""
    global _LOCAL_ZONE
    _LOCAL_ZONE = None if zone is UTC else zone
    _SECOND_MICROS.clear()


def micros_from_iso(text: str) -> int | None:
    """Return the time of an ISO 8601 / RFC 3339 string in microseconds; naive times are UTC
    (or in the zone of ``set_local_zone``)."""
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    zone = ts.tzinfo
    if zone is None and _LOCAL_ZONE is not None:
        try:
            ts = ts.replace(tzinfo=_LOCAL_ZONE)
            return _in_range((ts - EPOCH) // MICROSECOND)  # the zone's offset on that day (summer time too)
        except OverflowError:
            return None
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
            if value[2:3] == "/" and value[4:5] != "-":  # nginx's $time_local: 27/Nov/2026:11:32:10 +0000
                return _micros_from_clf(value)
            return micros_from_iso(value)
        try:
            return micros_from_epoch(float(value))
        except ValueError:
            return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return micros_from_epoch(float(value))
    if isinstance(value, dict):
        return _micros_from_object(value)
    return None


_CLF = re.compile(r"(\d\d)/([A-Za-z]{3})/(\d{4}):(\d\d:\d\d:\d\d) ([+-]\d\d)(\d\d)")


def _micros_from_clf(text: str) -> int | None:
    found = _CLF.fullmatch(text)
    if found is None:
        return None
    day, month, year, clock, hours, minutes = found.groups()
    number = month_number(month)
    return micros_from_iso(f"{year}-{number:02d}-{day}T{clock}{hours}:{minutes}") if number else None


def _micros_from_object(value: dict[str, Any]) -> int | None:
    """A time object: protobuf/GCP ``{seconds, nanos}``, log4j2's ``{epochSecond, nanoOfSecond}``,
    MongoDB's ``{"$date": ...}``."""
    try:
        if "seconds" in value:
            return micros_from_epoch(float(value["seconds"]) + float(value.get("nanos", 0)) / 1e9)
        if "epochSecond" in value:
            return micros_from_epoch(float(value["epochSecond"]) + float(value.get("nanoOfSecond", 0)) / 1e9)
    except (TypeError, ValueError):
        return None
    if "$date" in value:
        return micros_from_value(value["$date"])
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
    # A header line whose level is on the line below (java.util.logging's two-line records):
    # a ``LEVEL: message`` line right after it completes this record instead of starting one.
    awaits_level: bool = False
    # The format that took the line ("json", "logfmt", a text format's name, ...), which
    # ``ship --explain`` reports: set where the parser decided, so explain needs no detector.
    format: str = ""


TIME_KEYS = (
    "@timestamp",
    "timestamp",
    "time",
    "ts",
    "t",
    "date",
    "datetime",
    "asctime",
    "@t",
    "eventTime",
    "instant",  # log4j2 JsonLayout
    "__REALTIME_TIMESTAMP",  # journalctl -o json
    "time_local",
    "start_time",  # Envoy's JSON access log
    "Timestamp",
    "timeMillis",
    "timeUnixNano",  # OpenTelemetry
    "time_iso8601",  # nginx
    "requestReceivedTimestamp",  # Kubernetes audit events
)
LEVEL_KEYS = (
    "level",
    "lvl",
    "severity",
    "levelname",
    "loglevel",
    "log.level",
    "level_name",
    "@l",
    "log_level",
    "severity_text",
    "SeverityText",
    "PRIORITY",  # journald (syslog severity)
    "Level",
    "LogLevel",  # Microsoft.Extensions.Logging
    "severityText",
    "severity_number",
    "SeverityNumber",
    "severityNumber",
    "s",  # MongoDB 4.4+
    "at",  # Heroku's router (only a level word is taken: anything else stays an attr)
)
MESSAGE_KEYS = (
    "msg",
    "message",
    "textPayload",
    "@m",
    "text",
    "log.message",
    "event",
    "MESSAGE",  # journald
    "short_message",  # GELF
    "Message",
    "body",
    "Body",
    "@mt",  # Serilog's compact JSON: the message template, when no rendered @m
)
SERVICE_KEYS = (
    "service",
    "service.name",
    "service_name",
    "app",
    "application",
    "appname",
    "app_name",
    "SYSLOG_IDENTIFIER",  # journald
    "serviceName",
)
_SEVERITY_NUMBER_KEYS = frozenset(("severity_number", "SeverityNumber", "severityNumber"))
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
    "@tr",  # Serilog's compact JSON
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


def is_trace_key(key: str) -> bool:
    """Whether ``key`` names a trace id whatever its case and separators (``TRACE_ID``, ``trace-id``, ``TraceId``)."""
    return key.lower().replace("_", "").replace("-", "").replace(".", "") == "traceid"


def _roles_of(obj: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """One pass over the keys: for each role, the best-ranked key present."""
    found: dict[str, tuple[int, str]] = {}
    for key in _ROLE_KEYS.intersection(obj):  # a set operation in C, not a loop over every key
        role, rank = _ROLES[key]
        current = found.get(role)
        if current is None or rank < current[0]:
            found[role] = (rank, key)
    for key in obj:
        if key[:1] == "@" and key[1:] in _ROLES and key not in _ROLES:  # hclog: @level, @message
            role, rank = _ROLES[key[1:]]
            if role not in found:
                found[role] = (rank, key)
    if "trace" not in found:
        other = next((k for k in obj if is_trace_key(k)), None)
        if other is not None:
            found["trace"] = (len(TRACE_KEYS), other)
    return found


def _inner_trace_key(value: object) -> str | None:
    if isinstance(value, dict):
        return next((k for k in value if is_trace_key(k) or k == "traceparent"), None)
    return None


def _nested_trace_key(obj: dict[str, Any]) -> str | None:
    """The key of the object one level down that holds a trace id (``{"span": {"traceId": ...}}``)."""
    return next((outer for outer, value in obj.items() if _inner_trace_key(value) is not None), None)


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
    # the key whose object held a trace id one level down in the first object of these
    # keys: a logger writes the same shape on every line, so it is looked for there
    nested_trace: str | None = None
    status: str | None = None  # an HTTP status, for the level of a JSON access log that has none


_PLANS: dict[tuple[str, ...], _Plan] = {}
_STATUS_KEYS = ("status", "status_code", "statusCode", "http_status", "response_code")


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
            None if "trace" in roles else _nested_trace_key(obj),
            None if "level" in roles else next((k for k in _STATUS_KEYS if k in obj), None),
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
    raw_level = None
    if plan.level is not None:
        raw_level = obj[plan.level]
        level = level_from_value(raw_level, plan.level)
        if level is not None:
            del obj[plan.level]
    elif plan.nesting and isinstance(obj.get("log"), dict):
        level = level_from_value(_take_nested(obj, "log", "level"))
    elif plan.status is not None:  # only set when no level key is known
        level = _level_of_status(obj[plan.status])
    if plan.time is not None:
        micros = micros_from_value(obj[plan.time])
        if micros is not None:
            del obj[plan.time]
    if plan.service is not None:
        value = obj[plan.service]
        # a name, not a measure: Heroku's router writes service=18ms (the time it took)
        if isinstance(value, str) and value and not value[0].isdigit():
            service = value
            del obj[plan.service]
    if service is None and plan.nesting:
        service = _nested_service(obj, isinstance(raw_level, int))  # pino, bunyan: a numeric level
    if plan.trace is not None:
        trace_id = trace_from_value(plan.trace, obj[plan.trace])
        if trace_id is not None:
            del obj[plan.trace]
    if trace_id is None and plan.nesting and isinstance(obj.get("trace"), dict):
        nested = _take_nested(obj, "trace", "id")
        trace_id = str(nested) if nested is not None else None
    if trace_id is None and plan.nested_trace is not None:
        inner = _inner_trace_key(obj.get(plan.nested_trace))
        if inner is not None:
            trace_id = trace_from_value(inner, _take_nested(obj, plan.nested_trace, inner))
    if plan.message is not None:
        value = obj[plan.message]
        if isinstance(value, str):
            message = value
            del obj[plan.message]
    return Parsed(raw if message is None else message, level, micros, service, trace_id, obj)


def _level_of_status(value: object) -> Level | None:
    """The level of an access log's HTTP status (a number, or its digits as text); it stays in attrs."""
    if isinstance(value, str) and len(value) == 3 and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return level_from_http_status(value)
    return None


def _nested_service(obj: dict[str, Any], numbered: bool) -> str | None:
    """ECS ``service.name``, GCP ``serviceContext.service``, or pino/bunyan's ``name``."""
    for outer, inner in (("service", "name"), ("serviceContext", "service")):
        if isinstance(obj.get(outer), dict):
            value = _take_nested(obj, outer, inner)
            if isinstance(value, str) and value:
                return value
    # pino and bunyan: the logger's name, beside a numeric level or the pid and hostname they add
    if isinstance(obj.get("name"), str) and obj["name"] and (numbered or "pid" in obj or "hostname" in obj):
        name: str = obj.pop("name")
        return name
    return None
