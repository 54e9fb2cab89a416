"""A file's layout, learned from its first lines (issue 24, item 2): which, when, and the same on every path."""

from __future__ import annotations

import os
import random
from pathlib import Path

from logctl.parsing.formats import DETECT
from logctl.parsing.layout import learned_layout
from logctl.sources import FileSource, RecordShape
from tests.unit.test_parallel import CRASH_REPORTS, _comparable, _shipped

TS_LEVEL = "".join(f"2026-12-03 10:00:{i:02d},123 {('INFO', 'WARN', 'ERROR')[i % 3]} event {i}\n" for i in range(20))


def test_a_file_written_in_one_format_shows_its_layout() -> None:
    assert learned_layout(TS_LEVEL.encode(), DETECT) == "ts_level"


def test_a_traceback_among_the_lines_does_not_hide_the_layout() -> None:
    cut = TS_LEVEL.index("2026", 200)  # at a line's start
    head = TS_LEVEL[:cut] + 'Traceback (most recent call last):\n  File "x"\nKeyError: 1\n' + TS_LEVEL[cut:]
    assert learned_layout(head.encode(), DETECT) == "ts_level"


def test_no_layout_from_too_few_lines_mixed_formats_or_json() -> None:
    assert learned_layout(TS_LEVEL.encode()[: TS_LEVEL.index("event 3")], DETECT) is None  # 3 lines
    mixed = "".join(
        line + "\n" + f"<13>Mar  1 10:00:0{i} host app[7]: syslog {i}\n" for i, line in enumerate(TS_LEVEL.splitlines())
    )
    assert learned_layout(mixed.encode(), DETECT) is None
    assert learned_layout(b'{"level":"info","msg":"x"}\n' * 20, DETECT) is None  # structured: nothing to learn


def test_a_file_that_began_short_takes_its_layout_once_its_first_lines_are_there(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(TS_LEVEL[: TS_LEVEL.index("event 2")])
    fd = os.open(log, os.O_RDONLY)
    src = FileSource(str(log), fd, os.fstat(fd), RecordShape("app"))
    try:
        first = src.first_line(final=False)
        assert first is not None
        src.identify(first)
        src.begin(0)
        assert src.shape.parse.layout is None
        with log.open("a") as fh:
            fh.write(TS_LEVEL * 120)  # the file grows past the first lines
        while src.read(1 << 16):
            pass
        assert src.shape.parse.layout == "ts_level"
        assert src.parser is not None and src.parser.options.layout == "ts_level"
    finally:
        src.close()


def test_workers_read_a_file_in_its_layout_as_a_single_process_does(tmp_path: Path) -> None:
    rng = random.Random(7)
    lines: list[bytes] = []
    for i in range(80_000):
        if rng.random() < 0.01:
            lines.extend(rng.choice(CRASH_REPORTS))
        elif rng.random() < 0.01:
            lines.append(b'{"level":"warn","msg":"a json line among them"}')
        else:
            lines.append(f"2026-12-03 10:00:00,{i % 1000:03d} {rng.choice(['INFO', 'ERROR'])} event {i}".encode())
    path = tmp_path / "app.log"
    path.write_bytes(b"\n".join(lines) + b"\n")
    alone = _shipped(path, 0, "msgpack")
    pooled = _shipped(path, 2, "msgpack")
    assert {r.id: _comparable(r) for r in pooled} == {r.id: _comparable(r) for r in alone}
    assert len(alone) > 75_000


def test_a_catch_all_format_is_never_a_layout_so_a_later_line_keeps_its_level(tmp_path: Path) -> None:
    """MariaDB's error log opens with [Note] lines; its [Warning] line must stay WARN (this machine's own log)."""
    notes = "".join(f"2026-12-03 13:11:38 0 [Note] InnoDB: step {i}\n" for i in range(12))
    text = notes + "2026-12-03 13:11:39 3 [Warning] Aborted connection 3 to db: 'unconnected'\n"
    assert learned_layout(text.encode(), DETECT) in (None, "ts_level")
    log = tmp_path / "error.log"
    log.write_text(text)
    records = _shipped(log, 0, "msgpack")
    assert [r.level.value for r in records] == ["INFO"] * 12 + ["WARN"]
    assert records[-1].message.startswith("Aborted connection")
    assert records[0].message == "InnoDB: step 0"  # [Note] is MariaDB's INFO, read as a level
