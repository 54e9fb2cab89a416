"""Processing at the edge: drop, keep, tag and redact records before they leave the host.

One ``Processing`` is made per source (ship's files and stdin, the HTTP intake, the syslog
listener) from the command line and the config file, and applied to parsed wire rows
before they are encoded: what is redacted never reaches the broker. Without any option
set there is no ``Processing`` at all (``processing_of`` returns None), so ship's hot path
pays one ``is None`` test per round.

Order, as Filebeat's ``include_lines``/``exclude_lines`` and then its processors: the
level floor, ``keep`` (a record is kept only if its message matches one of them), then
``drop``, then redaction of the message and every text in attrs, then the added fields
(which are not redacted: the operator wrote them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from logctl.errors import ConfigError
from logctl.records import ROW_LEVEL, Level, WireRow

ROW_MESSAGE, ROW_ATTRS = 4, 6


@dataclass(frozen=True, slots=True)
class Redaction:
    """A pattern whose matches (or, if it has groups, the group that matched) become ``replacement``.

    ``gate`` is a cheaper pattern that finds something in every text the pattern would
    (``"@"`` for an e-mail address): most lines hold no secret, and one search for the
    gates of all redactions at once costs a small part of running each (see Processing).
    """

    name: str
    regex: re.Pattern[str]
    replacement: str
    gate: str = ""  # "" = the regex is its own gate
    check: Callable[[str], bool] | None = None  # a match is redacted only if this holds (Luhn)

    def apply(self, text: str) -> str:
        return self.regex.sub(self._replace, text)

    def _replace(self, match: re.Match[str]) -> str:
        group = next((i for i in range(1, (self.regex.groups or 0) + 1) if match.start(i) >= 0), 0)
        secret = match.group(group)
        if self.check is not None and not self.check(secret):
            return match.group(0)
        if group == 0:
            return self.replacement
        start, end = match.start(group) - match.start(0), match.end(group) - match.start(0)
        whole = match.group(0)
        return whole[:start] + self.replacement + whole[end:]


def luhn_valid(text: str) -> bool:
    """Whether the digits of ``text`` (spaces and dashes ignored) pass the Luhn check of card numbers."""
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


# The presets. Each says in its replacement what was there, so a reader knows a value was
# removed rather than never written.
PRESETS: dict[str, Redaction] = {
    "email": Redaction(
        "email",
        re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"),
        "[redacted:email]",
        gate="@",
    ),
    # Authorization headers (Bearer, Basic and a token scheme's credentials) and JWTs anywhere.
    "bearer": Redaction(
        "bearer",
        re.compile(
            r"(?i:\b(?:bearer|basic|token)\s+([A-Za-z0-9\-._~+/]{8,}=*))"
            r"|(eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*)"
        ),
        "[redacted:bearer]",
        gate="eyJ|[Bb](?:earer|EARER|asic|ASIC)|[Tt](?:oken|OKEN)",  # case by case: (?i:) searches at half the speed
    ),
    "url-password": Redaction(
        "url-password",
        re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:([^\s/@]+)@"),
        "[redacted]",
        gate="://",
    ),
    "credit-card": Redaction(
        "credit-card",
        re.compile(r"(?<![\d.\-])(\d(?:[ \-]?\d){12,18})(?![\d.\-]\d)"),
        "[redacted:card]",
        gate=r"\d(?:[ \-]?\d){12}",
        check=luhn_valid,
    ),
    # Access key ids (AKIA long-term, ASIA temporary, and the other IAM prefixes) and a
    # secret access key written after its usual name.
    "aws-key": Redaction(
        "aws-key",
        re.compile(
            r"\b((?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16})\b"
            r"|(?i:aws_?secret_?access_?key\W{1,4})([A-Za-z0-9/+=]{40})\b"
        ),
        "[redacted:aws-key]",
        gate="A[KSBCGIRNP][A-Z]A|[Ss](?:ecret|ECRET)",
    ),
}


def redaction_of(spec: str) -> Redaction:
    """A preset by name, or a regular expression of one's own (its first group, if any, is redacted)."""
    preset = PRESETS.get(spec)
    if preset is not None:
        return preset
    try:
        regex = re.compile(spec)
    except re.error as exc:
        names = ", ".join(PRESETS)
        raise ConfigError(f"--redact {spec!r}: neither a preset ({names}) nor a valid regex: {exc}") from None
    return Redaction(spec, regex, "[redacted]")


@dataclass(frozen=True, slots=True)
class ProcessingOptions:
    """The edge options as given (flags, the config's ``[edge]`` and ``[path_edge."GLOB"]`` tables)."""

    min_level: Level | None = None
    keep: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    add_fields: tuple[tuple[str, str], ...] = ()
    redact: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.min_level or self.keep or self.drop or self.add_fields or self.redact)

    def under(self, specific: ProcessingOptions) -> ProcessingOptions:
        """These options with a more specific set's on top: its level floor wins, the lists add up,
        an added field it names too takes its value."""
        fields = dict(self.add_fields)
        fields.update(specific.add_fields)
        return ProcessingOptions(
            min_level=specific.min_level or self.min_level,
            keep=self.keep + specific.keep,
            drop=self.drop + specific.drop,
            add_fields=tuple(fields.items()),
            redact=tuple(dict.fromkeys(self.redact + specific.redact)),
        )


NO_PROCESSING = ProcessingOptions()


@dataclass(slots=True)
class Processing:
    """The edge options made ready to run over rows; counts what it dropped and redacted."""

    options: ProcessingOptions
    min_rank: int = -1
    keep: re.Pattern[str] | None = None
    drop: re.Pattern[str] | None = None
    redactions: tuple[Redaction, ...] = ()
    gate: Callable[[str], re.Match[str] | None] | None = None  # finds something wherever a redaction might
    added: tuple[tuple[tuple[str, ...], str], ...] = ()
    dropped: int = 0
    redacted: int = 0  # records with at least one value redacted
    _ranks: dict[str, int] = field(default_factory=lambda: {lvl.value: lvl.rank for lvl in Level})

    def apply(self, row: WireRow) -> bool:
        """Process one parsed row in place; False if it is to be dropped (and counted)."""
        if self._ranks.get(row[ROW_LEVEL], 2) < self.min_rank:
            self.dropped += 1
            return False
        message = row[ROW_MESSAGE]
        if (self.keep is not None and self.keep.search(message) is None) or (
            self.drop is not None and self.drop.search(message) is not None
        ):
            self.dropped += 1
            return False
        if self.redactions:
            self._redact(row)
        if self.added:
            attrs = row[ROW_ATTRS]
            for path, value in self.added:
                _put(attrs, path, value)
        return True

    def why_dropped(self, row: WireRow) -> str | None:
        """Why ``apply`` would drop ``row`` (for ``ship --explain``), or None; counts nothing."""
        if self._ranks.get(row[ROW_LEVEL], 2) < self.min_rank:
            return f"below --min-level {self.options.min_level}"
        if self.keep is not None and self.keep.search(row[ROW_MESSAGE]) is None:
            return "matches no --keep"
        if self.drop is not None and self.drop.search(row[ROW_MESSAGE]) is not None:
            return "matches --drop"
        return None

    def kept(self, rows: Iterable[WireRow]) -> list[WireRow]:
        """The rows that stay, processed."""
        return [row for row in rows if self.apply(row)]

    def redact_text(self, text: str) -> str:
        """``text`` with every redaction applied; the same object when none found anything."""
        gate = self.gate
        if gate is not None and gate(text) is None:
            return text
        redacted = text
        for redaction in self.redactions:
            redacted = redaction.apply(redacted)
        return text if redacted == text else redacted

    def _redact(self, row: WireRow) -> None:
        message = row[ROW_MESSAGE]
        redacted = self.redact_text(message)
        changed = redacted is not message
        if changed:
            row[ROW_MESSAGE] = redacted  # type: ignore[index]  # parsers' rows are lists
        attrs = row[ROW_ATTRS]
        if attrs and self._redact_values(attrs):
            changed = True
        self.redacted += changed

    def _redact_values(self, value: dict[str, Any] | list[Any]) -> bool:
        """Redact every text inside a dict or list, in place; whether anything changed."""
        changed = False
        items: Iterable[tuple[Any, Any]] = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in list(items):
            if isinstance(item, str):
                redacted = self.redact_text(item)
                if redacted is not item:
                    value[key] = redacted
                    changed = True
            elif isinstance(item, dict | list):
                changed |= self._redact_values(item)
        return changed


def _put(attrs: dict[str, Any], path: tuple[str, ...], value: str) -> None:
    """Set ``attrs[a][b]... = value`` for a dotted key, making the maps between (a non-map there is replaced)."""
    target = attrs
    for part in path[:-1]:
        inner = target.get(part)
        if not isinstance(inner, dict):
            inner = target[part] = {}
        target = inner
    target[path[-1]] = value


def _one_regex(patterns: Sequence[str], option: str) -> re.Pattern[str] | None:
    """Several patterns as one alternation: one search per record however many were given."""
    if not patterns:
        return None
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{option} {pattern!r}: not a valid regex: {exc}") from None
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def processing_of(options: ProcessingOptions) -> Processing | None:
    """The runnable form of ``options``; None when they ask for nothing."""
    if not options:
        return None
    redactions = tuple(redaction_of(spec) for spec in options.redact)
    return Processing(
        options,
        min_rank=options.min_level.rank if options.min_level else -1,
        keep=_one_regex(options.keep, "--keep"),
        drop=_one_regex(options.drop, "--drop"),
        redactions=redactions,
        gate=_gate_of(redactions),
        added=tuple((tuple(key.split(".")), value) for key, value in options.add_fields),
    )


def _gate_of(redactions: Sequence[Redaction]) -> Callable[[str], re.Match[str] | None] | None:
    """One search for the gates of all the redactions (None: none asked for, or one that cannot join)."""
    if not redactions:
        return None
    try:
        return re.compile("|".join(f"(?:{r.gate or r.regex.pattern})" for r in redactions)).search
    except re.error:  # a regex of one's own with global flags ("(?i)...") cannot be part of another
        return None


def parse_field(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--add-field`` (dotted keys nest, as ``query --where`` reads them)."""
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--add-field {text!r}: write KEY=VALUE (KEY may be dotted: k8s.cluster=eu1)")
    return key, value


def parse_level_name(text: str, option: str = "--min-level") -> Level:
    try:
        return Level(text.upper().replace("WARNING", "WARN"))
    except ValueError:
        raise ConfigError(f"{option} {text!r}: use one of TRACE DEBUG INFO WARN ERROR FATAL") from None


_TABLE_KEYS = frozenset({"min_level", "keep", "drop", "add_field", "redact"})


def options_of_table(table: Mapping[str, Any], where: str) -> ProcessingOptions:
    """The options of a config table (``[edge]`` or one ``[path_edge."GLOB"]``)."""
    unknown = sorted(set(table) - _TABLE_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TABLE_KEYS))})")

    def texts(key: str) -> tuple[str, ...]:
        raw = table.get(key, ())
        raw = [raw] if isinstance(raw, str) else raw
        if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
            raise ConfigError(f"{where}: {key} must be a text or a list of texts")
        return tuple(raw)

    added = table.get("add_field", {})
    if not isinstance(added, Mapping):
        raise ConfigError(f'{where}: add_field must be a table, e.g. add_field = {{ env = "prod" }}')
    level = table.get("min_level")
    options = ProcessingOptions(
        min_level=parse_level_name(str(level), f"{where}: min_level") if level else None,
        keep=texts("keep"),
        drop=texts("drop"),
        add_fields=tuple((str(k), str(v)) for k, v in added.items()),
        redact=texts("redact"),
    )
    processing_of(options)  # a bad regex or preset: an error now, naming the table
    return options


def resolve_processing(
    flags: Mapping[str, Sequence[str] | str | None], table: Mapping[str, Any], path_tables: Mapping[str, Any]
) -> tuple[ProcessingOptions, tuple[tuple[str, ProcessingOptions], ...]]:
    """The edge options for every path and per glob: a flag given replaces that key of ``[edge]``,
    and each ``[path_edge."GLOB"]`` table is laid over them for the paths it matches."""
    given = {key: value for key, value in flags.items() if value}
    merged = {**table, **{key: list(v) if not isinstance(v, str) else v for key, v in given.items()}}
    if "add_field" in given:
        merged["add_field"] = dict(parse_field(text) for text in given["add_field"])
    overall = options_of_table(merged, "[edge]" if not given else "the edge options")
    per_path = []
    for pattern, specific in path_tables.items():
        if not isinstance(specific, Mapping):
            raise ConfigError(f'[path_edge."{pattern}"] must be a table')
        per_path.append((str(pattern), options_of_table(specific, f'[path_edge."{pattern}"]')))
    return overall, tuple(per_path)
