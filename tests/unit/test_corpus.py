"""Auto-detection scored on the corpus of tests/corpus/: 98% of fields right, or it fails.

``pytest -s tests/unit/test_corpus.py`` prints the per-format table; so does
``benchmarks/corpus.py``. The README's table is generated from it (and checked here).
"""

from __future__ import annotations

import pytest

from tests.corpus.score import CORPUS, score_all, table

README = CORPUS.parent.parent / "README.md"
BEGIN, END = "<!-- corpus table: benchmarks/corpus.py --readme -->", "<!-- end of corpus table -->"
THRESHOLD = 0.98


def test_auto_detection_gets_98_percent_of_the_corpus_fields_right() -> None:
    scores = score_all()
    print("\n" + table(scores))
    right, total = sum(s.right for s in scores), sum(s.total for s in scores)
    wrong = [f"{s.name}: {w}" for s in scores for w in s.wrong]
    assert right / total >= THRESHOLD, f"{right}/{total} fields right; wrong:\n" + "\n".join(wrong)


def test_the_corpus_covers_25_formats_of_the_kinds_the_issue_names() -> None:
    scores = score_all()
    assert len(scores) >= 25
    categories = {s.category for s in scores}
    for needed in ("Java", ".NET", "Go", "Rust", "Node", "Ruby", "PHP", "Erlang/Elixir", "system", "containers",
                   "proxies", "databases", "cloud"):  # fmt: skip
        assert needed in categories, needed
    assert all(s.source.startswith("https://") for s in scores), [s.name for s in scores if not s.source]


def test_the_readme_table_is_the_corpus_table() -> None:
    text = README.read_text()
    if BEGIN not in text:
        pytest.fail("the README has no corpus table: run benchmarks/corpus.py --readme")
    shown = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert shown == table(score_all()), "the README's corpus table is stale: run benchmarks/corpus.py --readme"
