"""Print the per-format table of the parsing corpus (tests/corpus/); --readme writes it into README.md.

    .venv/bin/python benchmarks/corpus.py            # the table, then each field it got wrong
    .venv/bin/python benchmarks/corpus.py --readme   # refresh the README's table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.corpus.score import score_all, table  # noqa: E402
from tests.unit.test_corpus import BEGIN, END, README  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", action="store_true", help="write the table into README.md")
    opts = parser.parse_args()
    scores = score_all()
    shown = table(scores)
    print(shown)
    for score in scores:
        for wrong in score.wrong:
            print(f"{score.name}: {wrong}")
    if opts.readme:
        text = README.read_text()
        head, rest = text.split(BEGIN, 1)
        _old, tail = rest.split(END, 1)
        README.write_text(f"{head}{BEGIN}\n{shown}\n{END}{tail}")
        print("README.md updated", file=sys.stderr)


if __name__ == "__main__":
    main()
