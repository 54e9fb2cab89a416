"""What ``logctl query`` asks of a store: filters, search terms, groupings, and their parsing."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from logctl.errors import ConfigError
from logctl.records import Level, WireRow, micros_of

# A term must hold something the tokenizers take as a word: a letter or a digit.
_WORDLIKE = re.compile(r"[^\W_]")
# What a prefix search (``time*``) may be: one token, the same for both sinks' tokenizers.
_PREFIX_TOKEN = re.compile(r"^[^\W_]+$")
_PHRASE = re.compile(r'(-?)"([^"]*)"|(\S+)')
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_AGO_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MOST_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Term:
    """A word or phrase the message must hold (as words, in this order), or must not when ``negated``."""

    text: str
    negated: bool = False
    prefix: bool = False  # ``time*``: any word that starts so

    def __str__(self) -> str:
        shown = f'"{self.text}"' if " " in self.text else self.text
        return ("-" if self.negated else "") + shown + ("*" if self.prefix else "")


@dataclass(frozen=True, slots=True)
class Query:
    """Which stored records to find; every filter given must hold. Times are microseconds since the epoch."""

    levels: tuple[str, ...] = ()  # the levels accepted; empty: all
    services: tuple[str, ...] = ()
    since: int | None = None  # inclusive
    until: int | None = None  # exclusive
    trace_id: str | None = None
    where: tuple[tuple[str, str], ...] = ()  # attribute (dotted for nested) = value
    where_not: tuple[tuple[str, str], ...] = ()  # attribute absent, or not this value
    terms: tuple[Term, ...] = ()
    oldest_first: bool = False
    limit: int | None = None

    @property
    def positive(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if not t.negated)

    @property
    def negative(self) -> tuple[Term, ...]:
        return tuple(t for t in self.terms if t.negated)


class Group(StrEnum):
    LEVEL = "level"
    SERVICE = "service"
    TIME = "time"  # buckets of a duration


@dataclass(frozen=True, slots=True)
class Grouping:
    """``--count-by``: by level, by service, or by time buckets of ``bucket_s`` seconds."""

    group: Group
    bucket_s: int = 0


@dataclass(frozen=True, slots=True)
class Count:
    """How many records fell in one group; a time bucket also counts them per level."""

    key: str
    count: int
    levels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Found:
    """A stored record: its row (as on the wire) and the order it was stored in."""

    seq: int
    row: WireRow


def parse_terms(arguments: Iterable[str]) -> tuple[Term, ...]:
    """Return the search terms of the command line's words.

    An argument that holds a space is one phrase (the shell took its quotes); within an
    argument, ``"a b"`` is a phrase; ``-word`` or ``-"a b"`` excludes; ``word*`` is a prefix.
    """
    terms: list[Term] = []
    for argument in arguments:
        if " " in argument.strip() and '"' not in argument:
            negated = argument.startswith("-")
            terms.append(_term(argument[1:] if negated else argument, negated, phrase=True))
            continue
        for match in _PHRASE.finditer(argument):
            if match.group(2) is not None:
                terms.append(_term(match.group(2), bool(match.group(1)), phrase=True))
            else:
                word = match.group(3)
                negated = word.startswith("-") and len(word) > 1
                terms.append(_term(word[1:] if negated else word, negated, phrase=False))
    return tuple(terms)


def _term(text: str, negated: bool, *, phrase: bool) -> Term:
    text = " ".join(text.split())
    prefix = not phrase and text.endswith("*")
    if prefix:
        text = text[:-1]
        if not _PREFIX_TOKEN.match(text):
            raise ConfigError(f"{text}*: a prefix search takes one word of letters and digits, such as time*")
    if not _WORDLIKE.search(text):
        raise ConfigError(f"search term {text!r} holds no letter or digit: words are matched as words")
    return Term(text, negated, prefix)


def parse_where(pairs: Sequence[str]) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """``KEY=VALUE`` and ``KEY!=VALUE`` pairs of ``--where``: (equal, not equal); dotted keys name nested ones."""
    equal, unequal = [], []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or key.strip() == "!":
            raise ConfigError(f"--where {pair!r}: write KEY=VALUE or KEY!=VALUE, e.g. --where http.status=500")
        if key.endswith("!"):
            unequal.append((key[:-1].strip(), value))
        else:
            equal.append((key.strip(), value))
    return tuple(equal), tuple(unequal)


def parse_ago(text: str, what: str, now: datetime) -> int:
    """The time a duration (``30m``, ``12h``, ``7d``: a unit is required) before ``now``, in microseconds."""
    ago = _AGO.match(text)
    if ago is None:
        raise ConfigError(f"{what} {text!r}: give a duration with its unit (30m, 12h, 7d, 2w)")
    return micros_of(now) - int(float(ago.group(1)) * _AGO_UNITS[ago.group(2)] * 1_000_000)


def parse_when(text: str, what: str, now: datetime) -> int:
    """A time as microseconds: an ISO 8601 stamp (UTC if it names no zone) or a duration back from now (``1h``)."""
    if _AGO.match(text):
        return parse_ago(text, what, now)
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{what} {text!r}: give an ISO 8601 time (2026-12-03T10:00:00Z, 2026-12-03) "
            "or a duration back from now (30m, 1h, 7d)"
        ) from None
    return micros_of(stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC))


def parse_grouping(text: str) -> Grouping:
    """``--count-by level|service|DURATION``."""
    lowered = text.strip().lower()
    if lowered in (Group.LEVEL, Group.SERVICE):
        return Grouping(Group(lowered))
    ago = _AGO.match(lowered)
    if ago is None:
        raise ConfigError(f"--count-by {text!r}: use level, service, or a bucket duration such as 5m, 1h, 1d")
    seconds = int(float(ago.group(1)) * _AGO_UNITS[ago.group(2)])
    if seconds < 1:
        raise ConfigError(f"--count-by {text!r}: a bucket is at least one second")
    return Grouping(Group.TIME, seconds)


def levels_at_least(level: Level | None) -> tuple[str, ...]:
    """The level names ``--level`` accepts (all of them when none is given)."""
    return () if level is None else tuple(lvl.value for lvl in level.at_least())


def fill_buckets(counts: Sequence[Count], grouping: Grouping, query: Query) -> list[Count]:
    """Time buckets in order with the empty ones between (and from --since to --until) as zeros."""
    if grouping.group is not Group.TIME:
        return list(counts)
    step = grouping.bucket_s * 1_000_000
    by_start = {int(c.key): c for c in counts}
    starts = list(by_start)
    if query.since is not None:
        starts.append(query.since // step * step)
    if query.until is not None:
        starts.append((query.until - 1) // step * step)
    if not starts:
        return []
    first, last = min(starts), max(starts)
    if (last - first) // step >= MOST_BUCKETS:
        raise ConfigError(
            f"--count-by {grouping.bucket_s}s makes over {MOST_BUCKETS:,} buckets here: give a longer bucket or --since"
        )
    return [by_start.get(start, Count(str(start), 0, {})) for start in range(first, last + 1, step)]


def bucket_counts(rows: Iterable[tuple[int, str, int]]) -> list[Count]:
    """Fold (bucket start in seconds, level, count) rows of a store into a Count per bucket, in time order."""
    buckets: dict[int, dict[str, int]] = {}
    for start, level, n in rows:
        buckets.setdefault(int(start), {})[level] = int(n)
    return [Count(str(start * 1_000_000), sum(levels.values()), levels) for start, levels in sorted(buckets.items())]


def order_and_limit(query: Query, *, by_seq: bool, placeholder: str) -> tuple[str, list[int]]:
    """The ORDER BY and LIMIT of a search (both stores): stored order when following, else by time."""
    if by_seq:
        sql = " ORDER BY seq"
    else:
        direction = "" if query.oldest_first else " DESC"
        sql = f" ORDER BY timestamp{direction}, seq{direction}"
    if query.limit is None:
        return sql, []
    return f"{sql} LIMIT {placeholder}", [query.limit]
