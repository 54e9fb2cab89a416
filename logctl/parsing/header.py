"""The generic header reader: a time near the start of a line, in any common shape, and a level near it.

It reads the lines that no known format took, so it costs the known formats nothing.
A header is what most loggers write before their message, whatever else they write:

    PREFIX   (optional, up to two) [PID], <PRI>, [TAG], a PROGRAM or PROGRAM[PID]: (the
             service; a ``Label:`` before the time is kept in the message), or a level
             letter (``E [03/Dec/2026:10:00:00 +0000] ...``)
    TIME     bracketed or bare, in one of the shapes of ``_STAMP``: ISO 8601 and its
             variants (- / . between the date's parts, T or spaces, fractions after . or ,
             a zone, Z, UTC or none), day/month-name/year (``03/Dec/2026:10:00:00``,
             ``03-Dec-2026 10:00:00.123``), ctime and RFC 2822 (``Thu Dec  3 10:00:00 2026``,
             ``Thu, 03 Dec 2026 10:00:00 +0000``), a month name without a year (``Dec 03
             10:00:00.000``), epoch seconds / ms / us / ns, or a time of day alone at the
             very start (``[10:00:00]``, logback's default)
    TOKENS   the header's other tokens, looked through for a level (``tokens.header_level``): up to
             five of them, skipping what headers hold besides one (``[main]``, ``{f.py:3}``,
             ``pid=12``, ``name[12]:``, ``kid1|``, dotted logger names), until the first
             plain word, where the message begins

A line is taken only when its time is found there: a line without one stays what it
was (the continuation of the record above, or a record of its own), so stack traces
and wrapped messages keep their grouping.
"""

from __future__ import annotations

import re

from logctl.parsing.fields import SYSLOG_SEVERITY, Parsed, level_from_word, micros_from_epoch, micros_from_iso
from logctl.parsing.text import micros_dmy, micros_of_day, micros_without_year
from logctl.parsing.tokens import header_level
from logctl.records import Level

# How far into a line the time may start (after its prefix).
_REACH = 72

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]{0,6}"
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]{0,6}"
_CLOCK = r"\d\d:\d\d:\d\d"
_FRACTION = r"[.,]\d{1,9}"
_ZONE = r"Z|[+-]\d\d(?::?\d\d)?|UTC|GMT"
# Each shape's groups have their own prefix letter: i(so), d(ay-month-year), c(time),
# r(fc 2822), m(onth without year), e(poch), t(ime of day).
_STAMP = re.compile(
    rf"""
    (?:
    (?P<i_date>\d{{4}}[-/.]\d\d[-/.]\d\d)[T\ ]+(?P<i_clock>{_CLOCK})(?P<i_fraction>{_FRACTION})?
        (?:\ ?(?P<i_zone>{_ZONE}))?
  | (?P<d_day>\d{{1,2}})[-/\ ](?P<d_month>{_MONTH})[-/\ ](?P<d_year>\d{{4}})[:\ ]+(?P<d_clock>{_CLOCK})
        (?P<d_fraction>{_FRACTION})?(?:\ ?(?P<d_zone>{_ZONE}))?
  | {_WEEKDAY}\ +(?P<c_month>{_MONTH})\ +(?P<c_day>\d{{1,2}})\ +(?P<c_clock>{_CLOCK})(?P<c_fraction>{_FRACTION})?
        (?:\ +(?P<c_zone>UTC|GMT|[+-]\d{{4}}))?\ +(?P<c_year>\d{{4}})
  | {_WEEKDAY},\ +(?P<r_day>\d{{1,2}})\ +(?P<r_month>{_MONTH})\ +(?P<r_year>\d{{4}})\ +(?P<r_clock>{_CLOCK})
        (?P<r_fraction>{_FRACTION})?(?:\ +(?P<r_zone>{_ZONE}))?
  | (?P<m_month>{_MONTH})\ +(?P<m_day>\d{{1,2}})\ +(?P<m_clock>{_CLOCK})(?P<m_fraction>{_FRACTION})?
        (?:\ +(?P<m_year>\d{{4}})(?!\d))?
  | (?P<e_epoch>\d{{10}}(?:\.\d{{1,9}})?|\d{{13}}|\d{{16}}|\d{{19}})
  | (?P<t_clock>{_CLOCK})(?P<t_fraction>{_FRACTION})?
    )
    (?=[\s\]:|,)>-]|$)
    """,
    re.VERBOSE | re.ASCII,
)
# Most lines that reach the reader (a trace's) have no stamp, and a search of _STAMP costs
# microseconds: it is searched only near a clock's ":MM:" (a literal-led search costs a
# tenth), and an epoch only in the first characters of a line that starts like one.
_CLOCK_MINUTES = re.compile(r":[0-9][0-9]:")
_BEFORE_CLOCK = 19  # "Thu, 03 Dec 2026 10" is the longest shape before its first ':'
_LONGEST_STAMP = 48  # "Thu, 03 Dec 2026 10:00:00.123456789 +0000" and the mark after it
# What may stand before the time: each a prefix token, with the spaces after it.
_PREFIX = re.compile(
    r"""
    \s*(?:
        <(?P<pri>\d{1,3})>
      | \[(?P<pid>\d{1,10})\]
      | \[[^\]\s]{1,24}\]  # a tag: [ABCDE]
      | (?P<program>[A-Za-z][\w.-]{0,63})(?:\[(?P<ppid>\d{1,10})\])?(?P<label>:)?
    )\s*
    """,
    re.VERBOSE,
)


def read_header(line: str) -> Parsed | None:
    """The Parsed of a line that starts with a header as above, or None."""
    stamp = _find_stamp(line)
    if stamp is None:
        return None
    prefix = _read_prefix(line[: stamp.start()], stamp.lastgroup or "")
    if prefix is None:
        return None
    micros = _micros(stamp)
    if micros is None:
        return None
    rest = line[stamp.end() :]
    level, message = header_level(rest)
    pid, pri, program, letter_level, label = prefix
    attrs: dict[str, object] = {}
    if label:  # "Start-Date: 2025-06-24 14:36:25": a key, not a program
        program, message = None, line
    if pid is not None:
        attrs["pid"] = int(pid)
    level = level or letter_level
    if pri is not None and int(pri) < 192:
        level = level or SYSLOG_SEVERITY[int(pri) % 8]
        attrs["facility"] = int(pri) // 8
    parsed = Parsed(message or rest.strip(), level, micros, program, None, attrs)
    parsed.text = True
    parsed.format = "header"
    return parsed


def _find_stamp(line: str) -> re.Match[str] | None:
    """The first stamp that starts within _REACH: searched up to _REACH + _LONGEST_STAMP,
    as a tighter end would cut a stamp that runs past _REACH (its fraction or zone read
    short), and none would scan all of a long line."""
    end = _REACH + _LONGEST_STAMP
    minutes = _CLOCK_MINUTES.search(line, 0, _REACH + 24)
    if minutes is not None:
        stamp = _STAMP.search(line, max(0, minutes.start() - _BEFORE_CLOCK), end)
    elif line[:1].isdigit() or line[:1] in "[<":
        stamp = _STAMP.search(line, 0, end)
    else:
        return None
    return stamp if stamp is not None and stamp.start() <= _REACH else None


# pid, pri, program, the level of a level letter, whether the program was a label
_Prefix = tuple[str | None, str | None, str | None, Level | None, bool]


def _read_prefix(text: str, shape: str) -> _Prefix | None:
    """What stands before the time, or None when that is not a header's prefix (the time is in a message)."""
    if text.endswith("["):
        text = text[:-1]
    if not text.strip():
        return None, None, None, None, False
    if shape.startswith("t_"):  # a time of day alone counts only at the start of a line
        return None
    pid = pri = program = None
    level: Level | None = None
    label = False
    at, tokens = 0, 0
    while at < len(text):
        token = _PREFIX.match(text, at)
        if token is None or token.end() == at or tokens == 2:
            return None
        tokens += 1
        at = token.end()
        name = token.group("program")
        if name is not None and len(name) == 1:  # a level letter before the time
            level = level_from_word(name) if name.isupper() else None
            if level is None:
                return None
        elif name is not None:
            program, label = name, bool(token.group("label")) and token.group("ppid") is None
            pid = token.group("ppid") or pid
        pid = token.group("pid") or pid
        pri = token.group("pri") or pri
    return pid, pri, program, level, label


def _micros(stamp: re.Match[str]) -> int | None:
    shape = (stamp.lastgroup or "")[:1]
    g = stamp.group
    if shape == "e":
        return micros_from_epoch(float(g("e_epoch")))
    fraction = (g(f"{shape}_fraction") or "").replace(",", ".")[:7]
    clock = g(f"{shape}_clock") + fraction
    if shape == "t":
        return micros_of_day(clock)
    if shape == "m" and g("m_year") is None:
        return micros_without_year(g("m_month"), g("m_day"), clock)
    zone = _iso_zone(g(f"{shape}_zone") if shape != "m" else None)
    if shape == "i":
        date = g("i_date").replace("/", "-").replace(".", "-")
        return micros_from_iso(f"{date}T{clock}{zone}")
    return micros_dmy(g(f"{shape}_day"), g(f"{shape}_month"), g(f"{shape}_year"), clock, zone or None)


def _iso_zone(zone: str | None) -> str:
    if not zone:
        return ""
    if zone in ("UTC", "GMT", "Z"):
        return "Z"
    if len(zone) == 3:  # +02
        return f"{zone}:00"
    if len(zone) == 5:  # +0200
        return f"{zone[:3]}:{zone[3:]}"
    return zone
