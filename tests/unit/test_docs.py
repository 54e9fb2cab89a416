"""Man pages and completions are generated from the app: committed copies must match, and render."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from logctl.cli import app
from logctl.cli.docs import commands, completions, example_lines, man_pages

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT", "FILES", "EXIT STATUS")


def test_committed_man_pages_are_current() -> None:
    pages = man_pages()
    committed = {p.name: p.read_text() for p in (REPO / "man").glob("*.1")}
    stale = sorted(name for name in pages.keys() | committed.keys() if pages.get(name) != committed.get(name))
    assert not stale, f"stale man pages {stale}: run make docs"


def test_committed_completions_are_current() -> None:
    for name, text in completions().items():
        path = REPO / "completions" / name
        assert path.exists() and path.read_text() == text, f"completions/{name} is stale: run make docs"


def test_every_command_has_a_page_with_every_section_and_examples() -> None:
    pages = man_pages()
    for words, command in commands():
        page = pages[f"logctl-{'-'.join(words)}.1"]
        for section in SECTIONS:
            assert f".SH {section}\n" in page, (words, section)
        if command.epilog:
            assert ".SH EXAMPLES" in page


def test_every_page_renders_with_man_without_warnings(tmp_path: Path) -> None:
    assert shutil.which("man"), "man-db is missing: make test installs it (scripts/ensure-test-tools)"
    for page in sorted((REPO / "man").glob("*.1")):
        result = subprocess.run(
            ["man", "--warnings", "-l", str(page)],
            capture_output=True,
            text=True,
            env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_FORMATTING": "0", "MANPAGER": "cat", "PAGER": "cat"},
            timeout=30,
        )
        assert result.returncode == 0, (page.name, result.stderr)
        assert result.stderr == "", (page.name, result.stderr)
        assert "EXIT STATUS" in re.sub(".\x08", "", result.stdout)  # without man's overstrike bold


def test_the_readme_names_every_command() -> None:
    readme = (REPO / "README.md").read_text()
    for words, _command in commands():
        assert f"logctl {words[0]}" in readme, f"logctl {' '.join(words)} is not in the README"


def _unroff(text: str) -> str:
    return text.replace("\\-", "-").replace("\\e", "\\").removeprefix("\\&")


def test_every_example_in_help_is_the_man_pages_character_for_character() -> None:
    """A user copies an example from --help: no markup may eat a * or a <name>, no wrap split it."""
    pages = man_pages()
    runner = CliRunner()
    checked = 0
    for words, command in commands():
        expected = example_lines(command)
        if not expected:
            continue
        page = pages[f"logctl-{'-'.join(words)}.1"]
        in_man = [_unroff(m) for m in re.findall(r"^\.nf\n(.*)\n\.fi$", page, re.MULTILINE)]
        assert in_man == expected, words
        result = runner.invoke(app, [*words, "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        shown = result.output.partition("Examples:")[2].splitlines()
        assert [line.strip() for line in shown if line.strip()] == expected, words
        checked += 1
    assert checked >= 20
    assert "'*.error'" in " ".join(example_lines(dict(commands())[("consume",)]))


def test_help_shows_a_default_that_names_a_placeholder_as_written() -> None:
    result = CliRunner().invoke(app, ["consume", "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert "[default: <exchange>.default]" in result.output
