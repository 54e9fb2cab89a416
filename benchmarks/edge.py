"""What each edge option costs per line, on one core, in a parse worker's code path; prints a table.

    .venv/bin/python benchmarks/edge.py --cpu            # 100,000 lines, CPU time
    .venv/bin/python benchmarks/edge.py --lines 50000

The lines are ``benchmarks/parse.py``'s (five formats interleaved), one in ten carrying
an e-mail address, a bearer token and a URL with a password, so that the redactions
have something to replace. Each row is ``parse_block`` with one option set, against the
same without any: the difference is what the option adds to a line. No broker needed.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.parse import blocks_of
from logctl.bench import synthetic_lines
from logctl.parallel import BlockJob, parse_block
from logctl.processing import PRESETS, ProcessingOptions
from logctl.records import Level
from logctl.sources import RecordShape

SECRETS = " user=bob@example.com Authorization: Bearer abcdef0123456789 db=postgres://app:hunter2@db/x"

OPTIONS: list[tuple[str, ProcessingOptions]] = [
    ("none", ProcessingOptions()),
    ("--min-level INFO", ProcessingOptions(min_level=Level.INFO)),
    ("--keep 'GET|POST|error'", ProcessingOptions(keep=("GET|POST|error",))),
    ("--drop '/healthz'", ProcessingOptions(drop=("/healthz",))),
    ("--add-field env=prod", ProcessingOptions(add_fields=(("env", "prod"),))),
    *[(f"--redact {name}", ProcessingOptions(redact=(name,))) for name in PRESETS],
    ("--redact (all five)", ProcessingOptions(redact=tuple(PRESETS))),
    ("--redact 'password=(\\S+)'", ProcessingOptions(redact=(r"password=(\S+)",))),
]


def micros_per_line(blocks: list[tuple[bytes, int]], shape: RecordShape, runs: int, clock: object) -> float:
    best = float("inf")
    tick = clock  # type: ignore[assignment]
    for _ in range(runs):
        started = tick()  # type: ignore[operator]
        lines = 0
        for data, base in blocks:
            lines += parse_block(BlockJob(data, base, "0123456789abcdef", shape, "msgpack")).lines
        best = min(best, tick() - started)  # type: ignore[operator]
    return best / max(lines, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="the best of this many runs counts")
    parser.add_argument("--cpu", action="store_true", help="CPU time, not wall time (steadier on a VM)")
    opts = parser.parse_args()
    clock = time.process_time if opts.cpu else time.perf_counter
    lines = [line + SECRETS if i % 10 == 3 else line for i, line in enumerate(synthetic_lines(opts.lines, 100))]
    blocks = blocks_of(lines)
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # as in a parse worker
    rows = [
        (name, micros_per_line(blocks, RecordShape("bench", processing=o), opts.runs, clock)) for name, o in OPTIONS
    ]
    base = rows[0][1]
    what = "CPU time" if opts.cpu else "wall time"
    print(f"{opts.lines:,} lines, 1 in 10 with secrets; parse_block on one core ({what}, best of {opts.runs})\n")
    print(f"{'option':<28} {'us/line':>8} {'added':>8} {'ratio':>6}")
    for name, micros in rows:
        print(f"{name:<28} {micros:8.2f} {micros - base:+8.2f} {micros / base:6.2f}x")


if __name__ == "__main__":
    main()
