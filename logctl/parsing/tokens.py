"""Where a level is written among the parts of a line's header, however it is written.

A header holds more than a time and a level: a thread (``[main]``), a caller
(``{taskinstance.py:1103}``), a pid (``name[12]:``, ``pid=12``), a worker (``kid1|``),
a logger (``o.a.s.c.CoreContainer``). ``header_level`` looks through up to five such
tokens for the level, which loggers write in many ways: ``[ERR]``, ``[INFO ]``,
``<Warning>``, ``ERROR``, ``error:``, ``WARN|``, ``W!``, ``[W]``, glued to another token
(``ERROR/MainProcess``, ``[Server thread/WARN]``, ``[core:error]``) or ``level=warn``.
The first plain word ends the header: the message has begun, and a level word inside a
message is not the record's level.
"""

from __future__ import annotations

import re

from logctl.parsing.fields import level_from_word
from logctl.records import Level

# One token of the header after the time, with the separators before it: a bracketed
# or angled or braced group, or a word with the marks glued after it.
_TOKEN = re.compile(
    r"""
    (?:[\s:|,\]]|-(?=\s))*
    (?:
        \[(?P<bracket>[^\]]{0,48})\]
      | <(?P<angle>[A-Za-z]{1,12})>
      | \{[^}]{0,120}\}
      | (?P<word>[^\s\[\]<{]+?(?:\[[^\]\s]{0,24}\])?)
    )
    (?P<marks>[:|!]*)(?=[\s\]]|$)
    """,
    re.VERBOSE,
)
_LEVEL_KEYS = ("level=", "lvl=", "severity=", "loglevel=")
_WHOLE_NAMES = frozenset(
    ["trace", "debug", "info", "notice", "warn", "warning", "error", "err", "fatal", "critical", "crit", "panic"]
)
_SPLIT = re.compile(r"[/:|,\s]+")
_MOST_TOKENS = 5


def header_level(rest: str) -> tuple[Level | None, str]:
    """The level among the header's tokens at the start of ``rest``, and the message without it."""
    at = 0
    for _ in range(_MOST_TOKENS):
        token = _TOKEN.match(rest, at)
        if token is None or token.end() == at:
            break
        level, plain = _level_of(token)
        if level is not None:
            before, after = rest[:at].strip(" :|-"), rest[token.end() :].strip()
            return level, f"{before} {after}" if before and after else before or after
        if plain:
            break  # the message has begun
        at = token.end()
    return None, rest.lstrip(" :|]-")


def _level_of(token: re.Match[str]) -> tuple[Level | None, bool]:
    """The level a header token writes, and whether it is a plain word (where a message begins)."""
    bracket, angle, word, marks = token.group("bracket", "angle", "word", "marks")
    if bracket is not None:
        parts = [p for p in _SPLIT.split(bracket.strip()) if p]
        if len(parts) == 1:
            return level_from_word(parts[0]), False
        return next((lv for p in parts if len(p) >= 3 and (lv := level_from_word(p)) is not None), None), False
    if angle is not None:
        return level_from_word(angle), False
    if word is None:  # a braced group
        return None, False
    lowered = word.lower()
    for key in _LEVEL_KEYS:
        if lowered.startswith(key):
            return level_from_word(word[len(key) :].strip("\"'")), False
    head = word.split("/", 1)[0]
    if len(head) == 1:
        if "!" in marks and head.isupper():  # Telegraf's W!
            return level_from_word(head), False
    elif marks or (head.isupper() and len(head) >= 3) or head in _WHOLE_NAMES or "/" in word:
        level = level_from_word(head)
        if level is not None:
            return level, False
    return None, not _skippable(word, marks)


def _skippable(word: str, marks: str) -> bool:
    """Whether a word is one of a header's parts other than a level: a name, a number, key=value."""
    return bool(marks) or word.isdigit() or "=" in word or "." in word or "_" in word or "[" in word
