"""The generic header reader: a time at the start of a line, in any common shape, and a level after it.

It reads the lines that no known format took, so it costs the known formats nothing.
A header is what most loggers write before their message, whatever else they do:

    [PID] or <PRI> or PROGRAM   (optional, one of them; PROGRAM is the service, a
                                 ``Label:`` before the time is kept in the message)
    TIME                         ISO 8601 and its variants (- / . between date parts, T or
                                 space, fractions after . or , , a zone, Z, UTC or none),
                                 or epoch seconds / milliseconds, bracketed or bare, a colon after
    LEVEL                        (optional) a level word or abbreviation: [ERR], <warn>, ERROR,
                                 error:, W

A line is taken only when its time is found there: a line without one stays what it
was (the continuation of the record above, or a record of its own), so stack traces
and wrapped messages keep their grouping.
"""

from __future__ import annotations

import re

from logctl.parsing.fields import SYSLOG_SEVERITY, Parsed, level_from_word, micros_from_epoch, micros_from_iso
from logctl.records import Level

_HEADER = re.compile(
    r"""
    (?:\[(?P<pid>\d{1,10})\]\s+|<(?P<pri>\d{1,3})>\s*|(?P<program>[A-Za-z][\w.-]{0,63})(?P<label>:)?\s+)?
    \[?
    (?:
        (?P<date>\d{4}[-/.]\d\d[-/.]\d\d)[T\ ]+(?P<clock>\d\d:\d\d:\d\d)(?P<fraction>[.,]\d{1,9})?
        \s?(?P<zone>Z|[+-]\d\d:?\d\d|UTC|GMT)?
      | (?P<epoch>\d{10}(?:\.\d{1,9})?|\d{13})
    )
    \]?:?(?:\s+|$)
    (?P<rest>.*)
    """,
    re.VERBOSE | re.DOTALL,
)
# A level token right after the time: in brackets or angles, or followed by a colon, or
# written in capitals; a bare lowercase word only when it is a level's whole name.
_LEVEL = re.compile(r"(?:\[(?P<b>[A-Za-z]{1,9})\]|<(?P<a>[A-Za-z]{1,9})>|(?P<w>[A-Za-z]{1,9})(?P<colon>:)?)(?:\s+|$)")
_WHOLE_NAMES = frozenset(
    ["trace", "debug", "info", "notice", "warn", "warning", "error", "err", "fatal", "critical", "crit", "panic"]
)


def read_header(line: str) -> Parsed | None:
    """The Parsed of a line that starts with a header as above, or None."""
    found = _HEADER.match(line)
    if found is None:
        return None
    micros = _micros(found)
    if micros is None:
        return None
    rest = found.group("rest")
    level, message = _level(rest)
    attrs: dict[str, object] = {}
    pid, pri, program = found.group("pid", "pri", "program")
    if found.group("label"):  # "Start-Date: 2025-06-24 14:36:25": a key, not a program
        program, message = None, line
    if pid is not None:
        attrs["pid"] = int(pid)
    if pri is not None and int(pri) < 192:
        level = level or SYSLOG_SEVERITY[int(pri) % 8]
        attrs["facility"] = int(pri) // 8
    parsed = Parsed(message or rest, level, micros, program, None, attrs)
    parsed.text = True
    parsed.format = "header"
    return parsed


def _micros(found: re.Match[str]) -> int | None:
    epoch = found.group("epoch")
    if epoch is not None:
        return micros_from_epoch(float(epoch))
    date = found.group("date").replace("/", "-").replace(".", "-")
    fraction = (found.group("fraction") or "").replace(",", ".")
    zone = found.group("zone") or ""
    if zone in ("UTC", "GMT"):
        zone = "Z"
    elif len(zone) == 5:  # +0200
        zone = f"{zone[:3]}:{zone[3:]}"
    return micros_from_iso(f"{date}T{found.group('clock')}{fraction[:7]}{zone}")


def _level(rest: str) -> tuple[Level | None, str]:
    """The level at the start of ``rest`` (and the message after it), if one is written there."""
    token = _LEVEL.match(rest)
    if token is None:
        return None, rest
    word = token.group("b") or token.group("a")
    if word is None:
        word = token.group("w")
        if not (token.group("colon") or (word.isupper() and len(word) >= 3) or word in _WHOLE_NAMES):
            return None, rest
    level = level_from_word(word)
    if level is None:
        return None, rest
    return level, rest[token.end() :]
