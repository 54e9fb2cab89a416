"""Formats by name: forcing one (``--format``), user-defined ones (config), the zone of zone-less stamps.

Detection (lines.py) needs none of this: with no option set a LineParser parses exactly
as before, at the same cost. A user-defined format is a regular expression with named
groups: ``timestamp``, ``level``, ``service``, ``message``, ``trace_id``; any other group
becomes an attr. It is tried before the built-in formats, or alone with ``--format``.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from logctl.errors import ConfigError
from logctl.parsing import fields, text
from logctl.parsing.fields import Parsed, level_from_word, micros_from_value, trace_from_value
from logctl.parsing.text import TEXT_PARSERS

# Formats by name: JSON objects, logfmt, CRI container lines, and each text format.
STRUCTURED_FORMATS = ("json", "logfmt", "cri")
TEXT_FORMATS = {f.name: f for f in TEXT_PARSERS}
BUILT_IN_FORMATS = (*STRUCTURED_FORMATS, *TEXT_FORMATS)
_ROLE_GROUPS = frozenset(("timestamp", "level", "service", "message", "trace_id"))


@dataclass(frozen=True, slots=True)
class UserFormat:
    """A format from the config file: a regex with named groups, and how its stamps are written."""

    name: str
    regex: re.Pattern[str]
    timestamp_format: str | None = None  # strptime's; None: ISO 8601, epoch numbers, as detected

    def parse(self, line: str) -> Parsed | None:
        found = self.regex.match(line)
        if found is None:
            return None
        groups = found.groupdict()
        attrs = {k: v for k, v in groups.items() if k not in _ROLE_GROUPS and v is not None}
        stamp = groups.get("timestamp")
        level = groups.get("level")
        trace = groups.get("trace_id")
        parsed = Parsed(
            groups.get("message") or line,
            level_from_word(level) if level else None,
            self._micros(stamp) if stamp else None,
            groups.get("service") or None,
            trace_from_value("trace_id", trace) if trace else None,
            attrs,
        )
        parsed.text = True  # like the text formats: a record with a time takes the lines below it
        parsed.format = self.name
        return parsed

    def _micros(self, stamp: str) -> int | None:
        if self.timestamp_format is None:
            return micros_from_value(stamp)
        try:
            ts = datetime.strptime(stamp, self.timestamp_format)
        except ValueError:
            return None
        return fields.micros_from_iso(ts.isoformat())  # a zone-less one gets --timezone's zone there


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """How one source is parsed: detected (the default), or one named format forced."""

    format: str | None = None  # a built-in or user-defined format's name
    user_formats: tuple[UserFormat, ...] = ()
    # The text format a file's first lines showed (parsing/layout.py): tried first on each
    # of its lines, detection for a line it does not take. None: detection only.
    layout: str | None = None

    @property
    def forced_user_format(self) -> UserFormat | None:
        return next((u for u in self.user_formats if u.name == self.format), None)


DETECT = ParseOptions()


def user_formats_of(table: Mapping[str, object]) -> tuple[UserFormat, ...]:
    """The config file's ``[formats.NAME]`` tables, checked: a bad regex is a ConfigError."""
    formats = []
    for name, spec in table.items():
        if name in BUILT_IN_FORMATS:
            raise ConfigError(f"format {name!r} in the config file has the name of a built-in format: rename it")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("regex"), str):
            raise ConfigError(f"format {name!r} in the config file needs regex = '...' (a regular expression)")
        try:
            regex = re.compile(str(spec["regex"]))
        except re.error as exc:
            raise ConfigError(f"format {name!r} in the config file: bad regex: {exc}") from exc
        if not regex.groupindex:
            raise ConfigError(f"format {name!r}: its regex names no group (write (?P<message>...) and the like)")
        stamp_format = spec.get("timestamp_format")
        formats.append(UserFormat(name, regex, str(stamp_format) if stamp_format else None))
    return tuple(formats)


def parse_options(name: str | None, user_formats: tuple[UserFormat, ...]) -> ParseOptions:
    """Options for a source: ``name`` forced (checked), else detection with the user formats first."""
    if name is not None and name not in BUILT_IN_FORMATS and all(u.name != name for u in user_formats):
        known = ", ".join([*BUILT_IN_FORMATS, *(u.name for u in user_formats)])
        raise ConfigError(f"unknown format {name!r}: known formats are {known}")
    return ParseOptions(name, user_formats)


def zone_of(name: str) -> tzinfo:
    """The zone named ``name`` (``Europe/Berlin``, ``UTC``, ``+02:00``), or a ConfigError."""
    if name.upper() == "UTC":
        return UTC
    if name[:1] in "+-":
        try:
            return datetime.fromisoformat(f"2000-01-01T00:00:00{name}").tzinfo or UTC
        except ValueError:
            pass
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {name!r}: give an IANA name (Europe/Berlin) or +02:00") from exc


def set_timezone(name: str | None) -> None:
    """Read zone-less stamps as written in ``name`` (None or "": UTC), in this process."""
    fields.set_local_zone(None if not name else zone_of(name))
    for cached in (text.micros_dmy, text._micros_without_year_on, text._micros_clf):
        cached.cache_clear()  # they hold times worked out in the zone before
