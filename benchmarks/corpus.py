"""Print the per-format table of the parsing corpus (tests/corpus/); --readme writes it into README.md.

    .venv/bin/python benchmarks/corpus.py            # the table, then each field it got wrong
    .venv/bin/python benchmarks/corpus.py --readme   # refresh the README's table
    .venv/bin/python benchmarks/corpus.py --held-out [--readme]     # the first held-out set (tests/heldout/)
    .venv/bin/python benchmarks/corpus.py --held-out 2 [--readme]   # the second, never tuned on (tests/heldout2/)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.corpus.score import HELD_OUT, HELD_OUT_2, score_all, table  # noqa: E402
from tests.unit.test_corpus import (
    BEGIN,
    END,
    HELD_OUT_2_BEGIN,
    HELD_OUT_2_END,
    HELD_OUT_BEGIN,
    HELD_OUT_END,
    README,
)  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    parser.add_argument(
        "--held-out",
        nargs="?",
        const="1",
        choices=["1", "2"],
        help="score a held-out set (1: tests/heldout/, 2: tests/heldout2/) instead of tests/corpus/",
    )
    opts = parser.parse_args()
    directory, begin, end = {
        None: (None, BEGIN, END),
        "1": (HELD_OUT, HELD_OUT_BEGIN, HELD_OUT_END),
        "2": (HELD_OUT_2, HELD_OUT_2_BEGIN, HELD_OUT_2_END),
    }[opts.held_out]
    scores = score_all(directory) if directory else score_all()
    shown = table(scores)
    print(shown)
    for score in scores:
        for wrong in score.wrong:
            print(f"{score.name}: {wrong}")
    if opts.readme:
        text = README.read_text()
        head, rest = text.split(begin, 1)
        _old, tail = rest.split(end, 1)
        README.write_text(f"{head}{begin}\n{shown}\n{end}{tail}")
        print("README.md updated", file=sys.stderr)


if __name__ == "__main__":
    main()
