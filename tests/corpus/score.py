"""Score the parser on the corpus: per file, how many expected fields it got right.

Fields per expected record: level, timestamp, service, trace id, and grouping (a record
starts at the expected line and the next one at the next expected record's line).
Used by tests/unit/test_corpus.py and benchmarks/corpus.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from logctl.parsing import parse_text
from logctl.parsing.formats import DETECT
from logctl.parsing.layout import LEARN_BYTES, with_layout
from logctl.records import LogRecord

CORPUS = Path(__file__).resolve().parent
# Formats the parser was not tuned on when they were written: a measure of generalisation.
# The first set's misses were what the header reader was then improved against, which made
# it a tuning set; the second was written and scored before that (tests/heldout2/README.md).
HELD_OUT = CORPUS.parent / "heldout"
HELD_OUT_2 = CORPUS.parent / "heldout2"
DEFAULT_SERVICE = "corpus"
FIELDS = ("level", "timestamp", "service", "trace_id", "grouping")
_EXPECT = re.compile(r">>> level=(\S+) ts=(\S+) service=(\S+) trace=(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class Expected:
    level: str
    ts: str  # "-": none in the line; "?" matches any digit
    service: str
    trace_id: str
    first_line: int  # index among the format's log lines
    line_count: int


@dataclass(slots=True)
class Score:
    name: str
    format: str
    category: str
    source: str
    note: str = ""
    right: int = 0
    total: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.right / self.total if self.total else 1.0


def load(path: Path) -> tuple[dict[str, str], list[str], list[Expected]]:
    """The header, the log lines and the expected records of one corpus file."""
    header: dict[str, str] = {}
    lines: list[str] = []
    expected: list[Expected] = []
    pending: tuple[str, ...] | None = None
    for raw in path.read_text().splitlines():
        if raw.startswith("# ") and not lines and pending is None:
            key, _, value = raw[2:].partition(":")
            header[key.strip()] = value.strip()
            continue
        found = _EXPECT.match(raw)
        if found:
            if pending is not None:
                raise ValueError(f"{path.name}: an expectation with no lines under it")
            pending = found.groups()
            continue
        if pending is not None:
            expected.append(Expected(*pending, first_line=len(lines), line_count=1))
            pending = None
        elif expected:
            last = expected[-1]
            expected[-1] = Expected(
                last.level, last.ts, last.service, last.trace_id, last.first_line, last.line_count + 1
            )
        else:
            raise ValueError(f"{path.name}: a line before the first expectation: {raw!r}")
        lines.append(raw)
    return header, lines, expected


def _timestamp_right(want: str, got: datetime, read_at: datetime) -> bool:
    if want == "-":
        return abs(got - read_at) < timedelta(minutes=5)  # the time it was read
    if "?" in want:
        shown = got.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return len(shown) == len(want) and all(w in ("?", g) for w, g in zip(want, shown, strict=True))
    return got == datetime.fromisoformat(want)


def score_file(path: Path) -> Score:
    header, lines, expected = load(path)
    score = Score(path.stem, header.get("format", path.stem), header.get("category", ""), header.get("source", ""))
    score.note = header.get("note", "")
    read_at = datetime.now(UTC)
    text = "\n".join(lines) + "\n"
    # As ship reads a file: in the layout its first lines show, if they show one.
    records = parse_text(text, "corpus", DEFAULT_SERVICE, with_layout(DETECT, text.encode()[:LEARN_BYTES]))
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode()) + 1)
    starts = {int(r.id.rsplit("-", 1)[1], 16): r for r in records}
    record_starts = sorted(starts)
    for i, want in enumerate(expected):
        start = offsets[want.first_line]
        end = offsets[want.first_line + want.line_count]
        got: LogRecord | None = starts.get(start)
        score.total += len(FIELDS)
        if got is None:
            score.wrong.append(f"line {want.first_line + 1}: no record starts here (joined to the one above)")
            continue
        following = [s for s in record_starts if s > start]
        checks = {
            "level": got.level.value == want.level,
            "timestamp": _timestamp_right(want.ts, got.timestamp, read_at),
            "service": got.service == (DEFAULT_SERVICE if want.service == "-" else want.service),
            "trace_id": got.trace_id == (None if want.trace_id == "-" else want.trace_id),
            "grouping": (following[0] if following else offsets[-1]) == end,
        }
        shown = {
            "level": got.level.value,
            "timestamp": got.timestamp.isoformat(),
            "service": got.service,
            "trace_id": got.trace_id,
            "grouping": f"{len([s for s in following if s < end])} extra record(s) inside"
            if following and following[0] < end
            else "joined the next record",
        }
        for name, right in checks.items():
            if right:
                score.right += 1
            else:
                score.wrong.append(f"line {want.first_line + 1} (record {i + 1}): {name} = {shown[name]!r}")
    return score


def score_all(directory: Path = CORPUS) -> list[Score]:
    return [score_file(path) for path in sorted(directory.glob("*.txt"))]


def table(scores: list[Score]) -> str:
    """The per-format table, in Markdown."""
    rows = ["| format | category | fields right | note |", "|---|---|---|---|"]
    for s in sorted(scores, key=lambda s: (s.category, s.format)):
        rows.append(f"| {s.format} | {s.category} | {s.right}/{s.total} | {s.note} |")
    right, total = sum(s.right for s in scores), sum(s.total for s in scores)
    rows.append(f"| **all {len(scores)} formats** | | **{right}/{total} ({right / total:.1%})** | |")
    return "\n".join(rows)
