"""A file's layout, learned from its first lines: the text format it is written in.

Detection tries a line's candidate formats in a fixed order and takes the first that
fits; a file is nearly always written in one format, and its first lines show which.
When they show one consistently, every line of the file is tried with that format
first (as ``--explain`` names it) and detected only when it does not fit: a line that
an earlier format in the order would also take is read as the file's, and the formats
before it are not tried. The layout depends on the file's first lines only, so a
restart, a parse worker's block and ``--explain`` all use the same one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from logctl.parsing.formats import TEXT_FORMATS, ParseOptions
from logctl.parsing.lines import LineParser

LEARN_BYTES = 16 << 10  # the head a layout is learned from
RELEARN_BYTES = 2 << 10  # a file that began shorter is looked at again after this much more
LEARN_LINES = 20  # at most this many of its lines
MIN_LINES = 5  # a layout needs at least this many lines that one text format took...
AGREEING = 0.9  # ...and that format to have taken this share of the lines any format took
# Catch-alls, tried last because they take what the others leave: never a layout, which
# would have them shadow every format before them (a time, then anything, takes a
# MariaDB [Warning] line that ts_level reads).
NEVER_A_LAYOUT = frozenset(("ts_only", "level_first"))


def learned_layout(head: bytes, options: ParseOptions) -> str | None:
    """The text format that ``head``'s lines show consistently, or None (too few, mixed, JSON...)."""
    if options.format is not None or options.user_formats:
        return None  # told what to use: nothing to learn
    complete = head[: head.rfind(b"\n") + 1].decode("utf-8", "replace").split("\n")[:LEARN_LINES]
    probe = LineParser("", "", options=options)
    taken: Counter[str] = Counter()  # by format, the lines some format took
    for line in complete:
        if not line.strip() or line[:1] in " \t":
            continue  # continuation lines, and lines no format takes (a traceback), say nothing of it
        parsed = probe.parsed_alone(line.rstrip("\r"))
        if parsed is not None:
            taken[parsed.format if parsed.text else "structured"] += 1
    if not taken:
        return None
    name, count = taken.most_common(1)[0]
    if (
        name not in TEXT_FORMATS
        or name in NEVER_A_LAYOUT
        or count < MIN_LINES
        or count < AGREEING * sum(taken.values())
    ):
        return None
    return name


def with_layout(options: ParseOptions, head: bytes) -> ParseOptions:
    """``options`` with the layout ``head`` shows, if it shows one."""
    layout = learned_layout(head, options)
    return options if layout is None else replace(options, layout=layout)
