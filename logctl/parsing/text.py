"""Parsers for text log lines: syslog, access and error logs, and the common loggers.

Each parser is a compiled regex plus a builder. A line is taken for the first format of
``TEXT_PARSERS`` (among those its shape allows) whose regex matches and whose builder
accepts the match.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from logctl.parsing.fields import (
    SYSLOG_SEVERITY,
    Parsed,
    level_from_http_status,
    level_from_word,
    micros_from_iso,
    month_number,
)
from logctl.parsing.tokens import header_level
from logctl.records import Level, micros_of


@dataclass(frozen=True, slots=True)
class TextFormat:
    """One text format: its name, its regex and how a match becomes a Parsed."""

    name: str
    regex: re.Pattern[str]
    build: Callable[[re.Match[str]], Parsed | None]


# Formats with whole-second stamps repeat each stamp on every line of a busy second.
@functools.lru_cache(maxsize=4096)
def micros_dmy(day: str, month: str, year: str, clock: str, offset: str | None = None) -> int | None:
    """Return the time of day/month-name/year parts (access, Redis and Apache logs), in microseconds."""
    number = month_number(month)
    if number is None:
        return None
    iso = f"{year}-{number:02d}-{int(day):02d}T{clock}"
    if offset:
        iso += offset
    return micros_from_iso(iso)


def micros_without_year(month: str, day: str, clock: str) -> int | None:
    """Return the time of an RFC 3164 stamp (no year: this year, or last year if that is the future)."""
    return _micros_without_year_on(month, day, clock, int(time.time() // 86400))


_TWO_DAYS = 2 * 86_400_000_000  # in microseconds


@functools.lru_cache(maxsize=4096)
def _micros_without_year_on(month: str, day: str, clock: str, _today: int) -> int | None:
    """``_micros_without_year`` cached per day (``_today``), on which the year it picks depends."""
    return micros_without_year_at(month, day, clock, datetime.now(UTC))


def micros_without_year_at(month: str, day: str, clock: str, now: datetime) -> int | None:
    """The year of a stamp without one, seen at ``now``: this year, or last if that is 2+ days ahead."""
    micros = micros_dmy(day, month, str(now.year), clock)
    if micros is not None and micros - micros_of(now) >= _TWO_DAYS:
        return micros_dmy(day, month, str(now.year - 1), clock)  # None for Feb 29 then
    return micros


def micros_of_day(clock: str) -> int | None:
    """Return today's date (UTC) at ``clock`` (logback's default pattern writes no date)."""
    return micros_from_iso(f"{datetime.now(UTC).date().isoformat()}T{clock.replace(',', '.')}")


# --- syslog ------------------------------------------------------------------------------

_RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) (?P<msgid>\S+) "
    r"(?P<sd>-|(?:\[(?:[^\]\\]|\\.)*\])+) ?(?P<msg>.*)",
    re.DOTALL,
)
_RFC3164 = re.compile(
    r"(?:<(?P<pri>\d{1,3})>)?(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<clock>\d\d:\d\d:\d\d) "
    r"(?P<host>\S+) (?P<app>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: ?(?P<msg>.*)",
    re.DOTALL,
)
# rsyslog's high-precision file format: ISO time, host, tag.
_SYSLOG_ISO = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) (?P<host>\S+) "
    r"(?P<app>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*)",
    re.DOTALL,
)


def _nil(value: str | None) -> str | None:
    return None if value in (None, "-") else value


def _syslog_attrs(match: re.Match[str], *keys: str) -> dict[str, object]:
    attrs: dict[str, object] = {}
    for key in keys:
        value = _nil(match.group(key))
        if value is not None:
            attrs[key] = value
    return attrs


def _check_groups(regex: re.Pattern[str], *names: str) -> None:
    """Check that the groups of ``regex`` are ``names``, in order.

    The hot builders unpack ``match.groups()`` (one call) instead of fetching groups by
    name (one lookup each); this fails at import if an edit of the regex moved a group.
    """
    if tuple(regex.groupindex) != names or regex.groups != len(names):
        raise AssertionError(f"{regex.pattern[:40]}: groups are not {names}")


# Facility and severity of each PRI value as written (0..191).
_PRI = {str(pri): (pri >> 3, SYSLOG_SEVERITY[pri & 7]) for pri in range(192)}


def _pri(pri: str | None, attrs: dict[str, object]) -> Level | None:
    """Return the severity of a PRI value and put its facility in attrs; None if it is no PRI."""
    if pri is None:
        return None
    known = _PRI.get(pri)
    if known is None:  # leading zeros, or out of range
        number = int(pri)
        if number > 191:
            return None
        known = (number >> 3, SYSLOG_SEVERITY[number & 7])
    attrs["facility"] = known[0]
    return known[1]


def _build_5424(m: re.Match[str]) -> Parsed | None:
    attrs = _syslog_attrs(m, "host", "proc", "msgid", "sd")
    level = _pri(m.group("pri"), attrs)
    if level is None:
        return None
    msg = m.group("msg")
    if msg.startswith("\ufeff"):
        msg = msg[1:]
    return Parsed(msg, level, micros_from_iso(m.group("ts")), _nil(m.group("app")), None, attrs)


_check_groups(_RFC3164, "pri", "mon", "day", "clock", "host", "app", "pid", "msg")


def _build_3164(m: re.Match[str]) -> Parsed | None:
    pri, mon, day, clock, host, app, pid, msg = m.groups()
    if host.endswith(":"):  # "Dec 03 10:00:00 imap-login: Info: ...": no host, so no syslog line
        return None
    attrs: dict[str, object] = {}
    if host != "-":
        attrs["host"] = host
    if pid is not None:
        attrs["pid"] = pid
    level = _pri(pri, attrs)
    if level is None and ": " in msg[:10]:
        level = _level_said(msg)
    return Parsed(msg, level, micros_without_year(mon, day, clock), app, None, attrs)


# What a syslog message without a PRI says of itself: "warning: ...", "error: ..." (Postfix,
# sshd, the kernel's "WARNING:"). Its case and a colon right after: prose rarely starts so.
_SAID = re.compile(r"(?i:(warning|warn|error|err|fatal|panic|critical|crit|notice|info|debug)):\s")


def _level_said(msg: str) -> Level | None:
    found = _SAID.match(msg)
    return level_from_word(found.group(1)) if found is not None else None


def _build_syslog_iso(m: re.Match[str]) -> Parsed | None:
    if level_from_word(m.group("host")) is not None:
        return None  # "<time> ERROR app: ..." is an application line, not syslog
    attrs = _syslog_attrs(m, "host", "pid")
    msg = m.group("msg")
    level = _level_said(msg) if ": " in msg[:10] else None
    return Parsed(msg, level, micros_from_iso(m.group("ts")), m.group("app"), None, attrs)


# --- web servers -------------------------------------------------------------------------

# Possessive \S++ (each is followed by a space, so it matches the same): lines of other
# formats fail at once instead of after trying every shorter split of their first words.
_ACCESS = re.compile(
    r"(?P<client>\S++) (?P<ident>\S++) (?P<user>\S++) \[(?P<day>\d\d)/(?P<mon>\w{3})/(?P<year>\d{4}):"
    r'(?P<clock>\d\d:\d\d:\d\d) (?P<tz>[+-]\d{4})\] "(?P<request>[^"\\]*(?:\\.[^"\\]*)*)" (?P<status>\d{3}) '
    r'(?P<bytes>\d+|-)(?: "(?P<referer>[^"\\]*(?:\\.[^"\\]*)*)" "(?P<agent>[^"\\]*(?:\\.[^"\\]*)*)")?(?P<rest>.*)'
)


_check_groups(
    _ACCESS,
    *("client", "ident", "user", "day", "mon", "year", "clock", "tz", "request", "status", "bytes"),
    *("referer", "agent", "rest"),
)


@functools.lru_cache(maxsize=4096)
def _micros_clf(day: str, month: str, year: str, clock: str, tz: str) -> int | None:
    """Return the time of a common-log-format stamp (``27/Nov/2026:11:32:10 +0000``), in microseconds."""
    return micros_dmy(day, month, year, clock, f"{tz[:3]}:{tz[3:]}")


def _build_access(m: re.Match[str]) -> Parsed | None:
    client, _ident, user, day, mon, year, clock, tz, request, code, size, referer, agent, rest = m.groups()
    status = int(code)
    attrs: dict[str, object] = {"client": client, "status": status, "request": request}
    if size != "-":
        attrs["bytes"] = int(size)
    if user != "-":
        attrs["user"] = user
    if referer and referer != "-":
        attrs["referer"] = referer
    if agent and agent != "-":
        attrs["agent"] = agent
    if rest and not rest.isspace():
        attrs["extra"] = rest.strip()
    return Parsed(m.group(0), level_from_http_status(status), _micros_clf(day, mon, year, clock, tz), None, None, attrs)


_NGINX_ERROR = re.compile(
    r"(?P<ts>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>\w+)\] (?P<pid>\d+)#(?P<tid>\d+): (?P<msg>.*)", re.DOTALL
)


def _build_nginx_error(m: re.Match[str]) -> Parsed | None:
    ts = micros_from_iso(m.group("ts").replace("/", "-"))
    attrs: dict[str, object] = {"pid": int(m.group("pid"))}
    return Parsed(m.group("msg"), level_from_word(m.group("level")), ts, None, None, attrs)


_APACHE_ERROR = re.compile(
    r"\[\w{3} (?P<mon>\w{3}) (?P<day>\d\d) (?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?) (?P<year>\d{4})\] "
    r"\[(?:(?P<module>[\w-]+):)?(?P<level>\w+)\] (?:\[pid (?P<pid>\d+)[^\]]*\] )?"
    r"(?:\[client (?P<client>[^\]]+)\] )?(?P<msg>.*)",
    re.DOTALL,
)


def _build_apache_error(m: re.Match[str]) -> Parsed | None:
    ts = micros_dmy(m.group("day"), m.group("mon"), m.group("year"), m.group("clock"))
    attrs: dict[str, object] = {}
    for key in ("module", "pid", "client"):
        if m.group(key):
            attrs[key] = m.group(key)
    return Parsed(m.group("msg"), level_from_word(m.group("level").rstrip("0123456789")), ts, None, None, attrs)


# --- databases ---------------------------------------------------------------------------

_POSTGRES = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)(?: (?P<tz>[A-Z]{2,5}|[+-]\d\d))? \[(?P<pid>\d+)\]"
    r"(?:-\d+)?:? (?:(?P<prefix>[^:]*?) )?(?P<level>DEBUG[1-5]?|INFO|NOTICE|WARNING|ERROR|LOG|FATAL|PANIC|"
    r"STATEMENT|DETAIL|HINT|CONTEXT|QUERY|LOCATION):  ?(?P<msg>.*)",
    re.DOTALL,
)
_PG_DETAIL = {"STATEMENT", "DETAIL", "HINT", "CONTEXT", "QUERY", "LOCATION"}


def _build_postgres(m: re.Match[str]) -> Parsed | None:
    tz = m.group("tz")
    ts = micros_from_iso(m.group("ts") + (tz + ":00" if tz and tz[0] in "+-" else ""))
    word = m.group("level")
    attrs: dict[str, object] = {"pid": int(m.group("pid"))}
    if word in _PG_DETAIL:
        attrs["pg_field"] = word
    if m.group("prefix"):
        attrs["prefix"] = m.group("prefix")
    level = Level.INFO if word in _PG_DETAIL else level_from_word(word)
    return Parsed(m.group("msg"), level, ts, None, None, attrs)


_REDIS = re.compile(
    r"(?P<pid>\d+):(?P<role>[XCSM]) (?P<day>\d\d) (?P<mon>\w{3}) (?P<year>\d{4}) "
    r"(?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?) (?P<mark>[.\-*#]) (?P<msg>.*)",
    re.DOTALL,
)
_REDIS_LEVEL = {".": Level.DEBUG, "-": Level.DEBUG, "*": Level.INFO, "#": Level.WARN}


def _build_redis(m: re.Match[str]) -> Parsed | None:
    ts = micros_dmy(m.group("day"), m.group("mon"), m.group("year"), m.group("clock"))
    attrs: dict[str, object] = {"pid": int(m.group("pid")), "role": m.group("role")}
    return Parsed(m.group("msg"), _REDIS_LEVEL[m.group("mark")], ts, None, None, attrs)


# --- application loggers -----------------------------------------------------------------

_KLOG = re.compile(
    r"(?P<lvl>[IWEF])(?P<mm>\d\d)(?P<dd>\d\d) (?P<clock>\d\d:\d\d:\d\d\.\d+) +(?P<tid>\d+) "
    r"(?P<src>[^\]\s]+)\] (?P<msg>.*)",
    re.DOTALL,
)


def _build_klog(m: re.Match[str]) -> Parsed | None:
    year = datetime.now(UTC).year
    ts = micros_from_iso(f"{year}-{m.group('mm')}-{m.group('dd')}T{m.group('clock')}")
    attrs: dict[str, object] = {"thread": int(m.group("tid")), "source": m.group("src")}
    return Parsed(m.group("msg"), level_from_word(m.group("lvl")), ts, None, None, attrs)


_RUBY = re.compile(
    r"(?P<lvl>[DIWEFUA]), \[(?P<ts>\d{4}-\d\d-\d\dT[\d:.]+)(?: #(?P<pid>\d+))?\] +(?P<level>\w+) -- "
    r"(?P<prog>[^:]*): (?P<msg>.*)",
    re.DOTALL,
)


def _build_ruby(m: re.Match[str]) -> Parsed | None:
    attrs: dict[str, object] = {}
    if m.group("pid"):
        attrs["pid"] = int(m.group("pid"))
    prog = m.group("prog").strip()
    return Parsed(
        m.group("msg"), level_from_word(m.group("level")), micros_from_iso(m.group("ts")), prog or None, None, attrs
    )


_LEVEL_WORD = r"TRACE|DEBUG|INFO|NOTICE|NOTE|WARNING|WARN|ERROR|ERR|FATAL|CRITICAL|CRIT|SEVERE|PANIC|FINE|ALERT|EMERG"
# The first letters of those words, either case: a lookahead on them spares the regex trying
# every word at every word of a line (a quarter of the match time of a Python logging line).
_INITIALS = "".join(sorted({word[0] for word in _LEVEL_WORD.split("|")}))
_LEVEL_INITIAL = f"(?=[{_INITIALS}{_INITIALS.lower()}])"
_TS = (
    r"(?P<ts>\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?(?:Z|[+-]\d\d:?\d\d))?"
    r"|(?P<clock>\d\d:\d\d:\d\d[.,]\d+))"
)
# Timestamp first, level among the next few words: Python logging, logback/log4j, Spring Boot, Go.
_ANY_CASE_LEVEL = f"{_LEVEL_INITIAL}(?P<level>{_LEVEL_WORD}|(?i:{_LEVEL_WORD}))"
# The words before the level are a thread or logger, never a sentence's start ("http: TLS
# handshake error" is Go's log, whose lines have no level: see _build_ts_level).
_TS_LEVEL = re.compile(
    _TS
    + r"\s+(?:UTC\s+)?(?P<pre>(?:[^\s]+\s+){0,3}?)\[?"
    + _ANY_CASE_LEVEL
    + r"\]?(?::|\s|$)\s*(?:[-|]\s+)?(?P<msg>.*)",
    re.DOTALL,
)
# NLog's default layout: time|LEVEL|logger|message (tried after _TS_LEVEL, which it never fits).
_NLOG = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)\|(?P<level>[A-Za-z]+)\|(?P<logger>[^|]*)\|(?P<msg>.*)", re.DOTALL
)
# Timestamp and message, no level word.
_TS_ONLY = re.compile(_TS + r"\s+(?P<msg>.*)", re.DOTALL)
# Level first: Python's basicConfig (``WARNING:root:msg``), ``[ERROR] msg``, ``ERROR: msg``;
# and in any case a level word in brackets (``[warn] msg``) or before a colon (``Warning: msg``,
# PHP's ``PHP Fatal error:  msg``): such a line starts a record, it never continues one.
_ANY_LEVEL_WORD = r"(?i:" + _LEVEL_WORD + r"|information|verbose|notice)"
_LEVEL_FIRST = re.compile(
    r"(?:\[?(?P<level>" + _LEVEL_WORD + r")\]?(?::(?P<logger>[\w.]+):|:?\s+)"
    r"|\[(?P<bracketed>" + _ANY_LEVEL_WORD + r")\]:?\s*"
    r"|(?P<colon>(?:PHP )?(?P<word>" + _ANY_LEVEL_WORD + r")(?: error)?):\s+)"
    r"(?P<msg>.*)",
    re.DOTALL,
)
_LOGGER_AFTER = re.compile(r"(?P<logger>[\w$]+(?:\.[\w$]+)+)\s*(?:-|:)\s+(?P<msg>.*)", re.DOTALL)
_SPRING = re.compile(r"(?P<pid>\d+) --- \[\s*(?P<thread>[^\]]*)\] (?P<logger>\S+)\s+: (?P<msg>.*)", re.DOTALL)


def _text_micros(ts: str | None, clock: str | None) -> int | None:
    if clock:  # _TS's group ts holds the clock too when only a time of day is written
        return micros_of_day(clock)
    assert ts is not None  # the regex matched one of the two
    if "/" in ts or " Z" in ts:
        ts = ts.replace("/", "-").replace(" Z", "Z")
    return micros_from_iso(ts)


def _split_logger(msg: str, attrs: dict[str, object]) -> str:
    """Move a leading ``pid --- [thread] logger :`` or ``com.example.Class -`` into attrs."""
    spring = _SPRING.match(msg) if " --- [" in msg else None
    if spring:
        attrs.update(pid=int(spring.group("pid")), thread=spring.group("thread"), logger=spring.group("logger"))
        return spring.group("msg")
    after = _LOGGER_AFTER.match(msg)
    if after:
        attrs["logger"] = after.group("logger")
        return after.group("msg")
    return msg


_check_groups(_TS_LEVEL, "ts", "clock", "pre", "level", "msg")


def _build_ts_level(m: re.Match[str]) -> Parsed | None:
    ts, clock, pre, word, msg = m.groups()
    attrs: dict[str, object] = {}
    if pre and ": " in pre:
        return None  # a sentence that names a level ("http: TLS handshake error"): Go's log, no level
    if pre and word.islower() and any(part.isalpha() and part.islower() for part in pre.split()):
        return None  # "request failed with error 502": words of a message, not a header's logger or thread
    pre = pre.strip(" -|:")
    if pre:
        if pre.startswith("[") and pre.endswith("]"):
            attrs["thread"] = pre[1:-1]
        else:
            attrs["logger"] = pre.strip(" -")
    msg = _split_logger(msg, attrs)
    return Parsed(msg, level_from_word(word), _text_micros(ts, clock), None, None, attrs)


def _build_nlog(m: re.Match[str]) -> Parsed | None:
    level = level_from_word(m.group("level"))
    if level is None:
        return None
    return Parsed(m.group("msg"), level, micros_from_iso(m.group("ts")), None, None, {"logger": m.group("logger")})


def _build_ts_only(m: re.Match[str]) -> Parsed | None:
    ts = _text_micros(m.group("ts"), m.group("clock"))
    if ts is None:
        return None
    message = m.group("msg")
    level, rest = header_level(message)  # a level among the header's other parts: W!, [main] WARN
    return Parsed(rest if level else message, level, ts, None, None, {})


# After the level, a thread and the time: Cassandra's "INFO  [main] 2026-11-27 11:32:10,123 ...".
_THEN_TS = re.compile(
    r"(?:\[(?P<thread>[^\]]*)\]\s+)?(?P<ts>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s+"
    r"(?P<msg>.*)",
    re.DOTALL,
)


def _build_level_first(m: re.Match[str]) -> Parsed | None:
    attrs: dict[str, object] = {}
    if m.group("logger"):
        attrs["logger"] = m.group("logger")
    if m.group("colon"):  # "Fatal error: ..." is a sentence: the whole line is its message
        return Parsed(m.string, level_from_word(m.group("word")), None, None, None, attrs)
    level = level_from_word(m.group("level") or m.group("bracketed"))
    msg = m.group("msg")
    then = _THEN_TS.match(msg) if msg[:1] in "[0123456789" else None
    if then is not None:
        micros = micros_from_iso(then.group("ts").replace(",", "."))
        if micros is not None:
            if then.group("thread"):
                attrs["thread"] = then.group("thread")
            return Parsed(then.group("msg"), level, micros, None, None, attrs)
    return Parsed(msg, level, None, None, None, attrs)


# --- more loggers: bracketed stamps, day-month-year stamps, two-line records ----------------

_ISO_TS = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?(?:Z|[+-]\d\d:?\d\d))?"
_PID_FIRST = re.compile(r"\[(?P<pid>\d+)\] (?P<rest>.*)", re.DOTALL)  # gunicorn: [pid] [LEVEL] message
# "[<time>] ..." and "[<time> LEVEL target] ...": Kafka and ZooKeeper (log4j), Monolog,
# Envoy's access log, PHP's error_log, Rust's env_logger.
_BRACKET_TS = re.compile(
    r"\[(?:(?P<ts>" + _ISO_TS + r")|(?P<day>\d\d)-(?P<mon>[A-Z][a-z]{2})-(?P<year>\d{4}) "
    r"(?P<clock>\d\d:\d\d:\d\d)(?: (?P<zone>UTC|GMT))?)"
    r"(?:\s+(?P<inlevel>" + _LEVEL_WORD + r")\s+(?P<target>[^\]\s]+))?\]"
    r"\s+(?P<rest>.*)",
    re.DOTALL,
)
_MONOLOG = re.compile(r"(?P<channel>[\w.-]+)\.(?P<level>[A-Z]+): (?P<msg>.*)", re.DOTALL)
_REQUEST_STATUS = re.compile(r'"[A-Z]+ \S+ [^"]*" (?P<status>\d{3}) ')
_WORD_FIRST = re.compile(r"(?P<level>" + _LEVEL_WORD + r")\s+(?P<msg>.*)", re.DOTALL)


def _build_bracket_ts(m: re.Match[str]) -> Parsed | None:
    ts, day, mon, year, clock, _zone, inlevel, target, rest = m.groups()
    micros = _text_micros(ts.replace(",", ".").replace(" +", "+").replace(" -", "-"), None) if ts else None
    if not ts:
        micros = micros_dmy(day, mon, year, clock)
    if micros is None:
        return None
    attrs: dict[str, object] = {}
    pid = _PID_FIRST.match(rest)
    if pid is not None:
        attrs["pid"] = int(pid.group("pid"))
        rest = pid.group("rest")
    if inlevel:  # env_logger: [time LEVEL target] message
        attrs["target"] = target
        return Parsed(rest, level_from_word(inlevel), micros, None, None, attrs)
    for regex in (_MONOLOG, _WORD_FIRST):
        found = regex.match(rest)
        if found is not None and level_from_word(found.group("level")) is not None:
            if regex is _MONOLOG:
                attrs["channel"] = found.group("channel")
            return Parsed(found.group("msg"), level_from_word(found.group("level")), micros, None, None, attrs)
    request = _REQUEST_STATUS.match(rest)
    if request is not None:  # an access log line: its level comes from its status
        status = int(request.group("status"))
        attrs["status"] = status
        return Parsed(rest, level_from_http_status(status), micros, None, None, attrs)
    leading = _LEVEL_FIRST.match(rest)  # PHP's "PHP Fatal error:  ..."
    first = _build_level_first(leading) if leading is not None else None
    if first is not None:
        return Parsed(rest, first.level, micros, None, None, attrs)
    level, message = header_level(rest)  # among the header's other parts: [main/WARN], kid1| ERROR:
    return Parsed(message if level else rest, level, micros, None, None, attrs)


_check_groups(_BRACKET_TS, "ts", "day", "mon", "year", "clock", "zone", "inlevel", "target", "rest")

# "[11:32:10 INF] message": Serilog's console sink (time of day, three-letter level).
_BRACKET_CLOCK = re.compile(
    r"\[(?P<clock>\d\d:\d\d:\d\d(?:[.,]\d+)?) (?P<level>[A-Za-z]{3,5})\] (?P<msg>.*)", re.DOTALL
)


def _build_bracket_clock(m: re.Match[str]) -> Parsed | None:
    level = level_from_word(m.group("level"))
    if level is None:
        return None
    return Parsed(m.group("msg"), level, micros_of_day(m.group("clock")), None, None, {})


# "27-Nov-2026 11:32:10.123 INFO [main] ...": Tomcat's OneLineFormatter.
_DMY_LEVEL = re.compile(
    r"(?P<day>\d\d)-(?P<mon>[A-Z][a-z]{2})-(?P<year>\d{4}) (?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?) "
    r"(?P<level>[A-Z]+) (?:\[(?P<thread>[^\]]*)\] )?(?P<msg>.*)",
    re.DOTALL,
)


def _build_dmy_level(m: re.Match[str]) -> Parsed | None:
    level = level_from_word(m.group("level"))
    micros = micros_dmy(m.group("day"), m.group("mon"), m.group("year"), m.group("clock"))
    if level is None or micros is None:
        return None
    attrs: dict[str, object] = {"thread": m.group("thread")} if m.group("thread") else {}
    return Parsed(m.group("msg"), level, micros, None, None, attrs)


# "Nov 27, 2026 11:32:10 AM com.example.Main run": java.util.logging's first line; the
# level and message follow on the next line ("WARNING: ...").
_JUL_HEADER = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) (?P<day>\d{1,2}), (?P<year>\d{4}) (?P<hour>\d{1,2}):(?P<rest>\d\d:\d\d) "
    r"(?P<ampm>[AP]M) (?P<source>\S+(?: \S+)?)$"
)


def _build_jul_header(m: re.Match[str]) -> Parsed | None:
    hour = int(m.group("hour")) % 12 + (12 if m.group("ampm") == "PM" else 0)
    micros = micros_dmy(m.group("day"), m.group("mon"), m.group("year"), f"{hour:02d}:{m.group('rest')}")
    if micros is None:
        return None
    return Parsed(m.string, None, micros, None, None, {"source": m.group("source")}, awaits_level=True)


TEXT_PARSERS: tuple[TextFormat, ...] = (
    TextFormat("syslog5424", _RFC5424, _build_5424),
    TextFormat("syslog3164", _RFC3164, _build_3164),
    TextFormat("access", _ACCESS, _build_access),
    TextFormat("postgres", _POSTGRES, _build_postgres),
    TextFormat("nginx_error", _NGINX_ERROR, _build_nginx_error),
    TextFormat("apache_error", _APACHE_ERROR, _build_apache_error),
    TextFormat("redis", _REDIS, _build_redis),
    TextFormat("klog", _KLOG, _build_klog),
    TextFormat("ruby", _RUBY, _build_ruby),
    TextFormat("syslog_iso", _SYSLOG_ISO, _build_syslog_iso),
    TextFormat("bracket_ts", _BRACKET_TS, _build_bracket_ts),
    TextFormat("bracket_clock", _BRACKET_CLOCK, _build_bracket_clock),
    TextFormat("dmy_level", _DMY_LEVEL, _build_dmy_level),
    TextFormat("jul", _JUL_HEADER, _build_jul_header),
    TextFormat("ts_level", _TS_LEVEL, _build_ts_level),
    TextFormat("nlog", _NLOG, _build_nlog),
    TextFormat("level_first", _LEVEL_FIRST, _build_level_first),
    TextFormat("ts_only", _TS_ONLY, _build_ts_only),
)


# Which line shapes (see line_shape) each format's lines can have.
_SHAPES = {
    "syslog5424": ("<",),
    "syslog3164": ("<", "U"),
    "access": ("d-", "d/", "d", "U", "o"),  # client address or host name
    "postgres": ("d-",),
    "nginx_error": ("d/",),
    "apache_error": ("[",),
    "redis": ("d",),
    "klog": ("U",),
    "ruby": ("U",),
    "syslog_iso": ("d-",),
    "bracket_ts": ("[",),
    "bracket_clock": ("[",),
    "dmy_level": ("d",),
    "jul": ("U",),
    "ts_level": ("d-", "d/", "d"),
    "nlog": ("d-",),
    "level_first": ("[", "U", "o"),
    "ts_only": ("d-", "d/", "d"),
}


def line_shape(line: str) -> str:
    """Return the shape of a line's start, which narrows the formats it can be.

    ``d-`` and ``d/``: a digit, and that character after four (a date); ``d``: other digits
    (an address, a pid, a clock); ``<``, ``[``; ``U``: an upper-case letter; ``o``: others.
    """
    first = line[0]
    if "0" <= first <= "9":
        mark = line[4:5]
        return "d-" if mark == "-" else "d/" if mark == "/" else "d"
    if first in "<[":
        return first
    if "A" <= first <= "Z":
        return "U"
    return "o"


# Candidate formats per line shape, in TEXT_PARSERS order (the first that matches wins).
CANDIDATES: dict[str, tuple[TextFormat, ...]] = {
    shape: tuple(f for f in TEXT_PARSERS if shape in _SHAPES[f.name]) for shape in ("d-", "d/", "d", "<", "[", "U", "o")
}


# The same as (regex.match, build, name) triples, looked up without calling line_shape: by
# a line's first character, then for digits (None) by its fifth. Per line, the calls saved
# cost as much as a failed regex match.
Matchers = tuple[tuple[Callable[[str], re.Match[str] | None], Callable[[re.Match[str]], Parsed | None], str], ...]


def _matchers(shape: str) -> Matchers:
    return tuple((f.regex.match, f.build, f.name) for f in CANDIDATES[shape])


MATCHERS_BY_FIRST: dict[str, Matchers | None] = {
    **{digit: None for digit in "0123456789"},
    **{first: _matchers(line_shape(first)) for first in "<[ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
}
MATCHERS_BY_FIFTH = {"-": _matchers("d-"), "/": _matchers("d/")}
MATCHERS_DIGITS = _matchers("d")
MATCHERS_OTHER = _matchers("o")
