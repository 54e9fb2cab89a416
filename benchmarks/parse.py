"""What parsing costs per line, on one core, in a parse worker's code path; prints a table.

    .venv/bin/python benchmarks/parse.py              # 200,000 lines
    .venv/bin/python benchmarks/parse.py --lines 50000

The lines are those of ``benchmarks/run.py`` (``logctl.bench.synthetic_lines``): five
formats interleaved, and each format alone. Each figure is the best of three runs of
``parallel.parse_block`` over 1 MiB blocks (detection, fields, timestamps, record ids,
msgpack rows), which is what bounds ``ship``: two workers of this speed share two cores
with ship's own process and RabbitMQ. No broker needed.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from logctl.bench import synthetic_lines
from logctl.parallel import BLOCK_BYTES, BlockJob, parse_block
from logctl.sources import RecordShape

FORMATS = ("JSON", "logfmt", "nginx access", "Python logging", "syslog 3164")


def blocks_of(lines: list[str]) -> list[tuple[bytes, int]]:
    """Cut the lines into blocks of whole lines of about BLOCK_BYTES, with their offsets."""
    data = ("\n".join(lines) + "\n").encode()
    blocks, pos = [], 0
    while pos < len(data):
        end = data.find(b"\n", pos + BLOCK_BYTES - 1)
        end = len(data) - 1 if end < 0 else end
        blocks.append((data[pos : end + 1], pos))
        pos = end + 1
    return blocks


def micros_per_line(
    lines: list[str], runs: int = 3, clock: Callable[[], float] = time.perf_counter, layout: bool = False
) -> float:
    """Best of ``runs``: microseconds per line that parse_block spends on these lines.

    ``layout``: in the layout the lines' head shows, as ship reads a file (parsing/layout.py).
    """
    blocks = blocks_of(lines)
    shape = RecordShape("bench")
    if layout:
        from logctl.parsing.layout import LEARN_BYTES, with_layout

        shape = RecordShape("bench", parse=with_layout(shape.parse, blocks[0][0][:LEARN_BYTES]))
    best = float("inf")
    for _ in range(runs):
        started = clock()
        parsed = 0
        for data, base in blocks:
            parsed += parse_block(BlockJob(data, base, "0123456789abcdef", shape, "msgpack")).lines
        best = min(best, clock() - started)
    return best / max(parsed, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--interleaved-only", action="store_true", help="only the first row (run.py's machine check)")
    parser.add_argument("--runs", type=int, default=3, help="the best of this many runs counts")
    parser.add_argument(
        "--cpu", action="store_true", help="CPU time, not wall time: steadier on a VM whose neighbours steal time"
    )
    parser.add_argument("--layout", action="store_true", help="each format alone in the layout its head shows, as ship")
    opts = parser.parse_args()
    clock = time.process_time if opts.cpu else time.perf_counter
    lines = list(synthetic_lines(opts.lines, 100))
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # as in a parse worker
    rows = [("all five, interleaved", micros_per_line(lines, opts.runs, clock))]
    if not opts.interleaved_only:
        rows += [
            (name, micros_per_line(lines[i :: len(FORMATS)], opts.runs, clock, opts.layout))
            for i, name in enumerate(FORMATS)
        ]
    what = "CPU time" if opts.cpu else "wall time"
    print(f"{opts.lines:,} lines of about 100 bytes; parse_block on one core ({what}, best of {opts.runs})\n")
    for name, micros in rows:
        print(f"{name:<24} {micros:6.2f} us/line  {1e6 / micros:>9,.0f} lines/s")


if __name__ == "__main__":
    main()
