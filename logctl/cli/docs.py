"""Man pages and shell completions, generated from the Typer app so that they never drift.

    python -m logctl.cli.docs man/ completions/      # what ``make docs`` runs

``logctl(1)`` lists the commands; each command (``logctl-ship(1)``, ``logctl-policy-apply(1)``
...) gets a page with NAME, SYNOPSIS, DESCRIPTION, OPTIONS, EXAMPLES, ENVIRONMENT, FILES
and EXIT STATUS, all read from the commands' definitions, ``config.py`` and
``errors.py``. The completion scripts are Typer's: they ask ``logctl`` itself what to
complete, so a new option completes without regenerating them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main
from typer._completion_shared import get_completion_script

from logctl import __version__
from logctl.cli import app
from logctl.config import _PARSERS as SETTING_KEYS
from logctl.config import env_name
from logctl.errors import ExitCode

SHELLS = {"bash": "logctl.bash", "zsh": "_logctl", "fish": "logctl.fish"}
_EXIT_MEANINGS = {
    ExitCode.OK: "success",
    ExitCode.BUG: "an unexpected error (a bug); --debug shows the traceback",
    ExitCode.USAGE: "usage: an unknown option or a missing argument",
    ExitCode.CONFIG: "configuration: a bad setting, config file or flag value",
    ExitCode.UNREACHABLE: "the broker (or the management API) cannot be reached",
    ExitCode.NOT_FOUND: "a file, queue or exchange does not exist",
    ExitCode.BAD_INPUT: "input that cannot be decoded",
    ExitCode.PARTIAL: "partial failure: the broker refused an operation",
    ExitCode.AUTH: "the broker refused the login or the vhost",
    ExitCode.PERMISSION: "permission denied: a file, or a broker operation this user may not do",
    ExitCode.LOCKED: "another logctl ship holds the state directory",
    ExitCode.CONFLICT: "a queue or exchange exists with other arguments",
    ExitCode.INTERRUPTED: "interrupted (SIGINT or SIGTERM twice)",
}


def _escape(text: str) -> str:
    """Text as roff: backslashes doubled, leading dots and quotes made literal."""
    lines = text.replace("\\", "\\e").replace("-", "\\-").splitlines()
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in lines)


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf command of the app, with its words (``("policy", "apply")``), in the order of --help.

    Typer's commands are click's (Typer carries its own copy of click), read by their attributes.
    """
    root: Any = group or typer.main.get_command(app)
    for name, command in root.commands.items():
        if command.hidden:
            continue
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


def _paragraphs(text: str) -> str:
    return "\n.PP\n".join(_escape(" ".join(p.split())) for p in text.strip().split("\n\n") if p.strip())


def _options(command: Any) -> str:
    out = []
    for param in command.params:
        if param.param_type_name == "argument":
            out.append(f".TP\n.I {_escape(param.human_readable_name)}\n{_escape(getattr(param, 'help', '') or '')}")
            continue
        if param.param_type_name != "option" or param.hidden:
            continue
        flags = ", ".join(_escape(f) for f in [*param.opts, *param.secondary_opts])
        help_text = _escape(" ".join((param.help or "").split()))
        default = param.default
        if default not in (None, False, (), []) and not callable(default) and not param.is_flag:
            help_text += f" (default: {_escape(str(getattr(default, 'value', default)))})"
        out.append(f".TP\n.B {flags}\n{help_text}")
    return "\n".join(out)


def example_lines(command: Any) -> list[str]:
    """The example command lines of a command's epilog (``app.examples``), as written."""
    lines = [line.strip() for line in (command.epilog or "").splitlines() if line.strip() not in ("", "\b")]
    return [line for line in lines if not line.rstrip(":").lower().startswith("example")]


def _examples(command: Any) -> str:
    return "\n".join(f".PP\n.nf\n{_escape(line)}\n.fi" for line in example_lines(command))


def _common_sections() -> str:
    env = [".SH ENVIRONMENT"]
    for key in SETTING_KEYS:
        env.append(f".TP\n.B {env_name(key)}\nthe setting {_escape(key)}, as the config file key of that name")
    env.append(".TP\n.B LOGCTL_CONFIG\nthe config file (default: ~/.config/logctl/config.toml)")
    env.append(".TP\n.B NO_COLOR\nno colour in human output")
    files = [
        ".SH FILES",
        ".TP\n.I ~/.config/logctl/config.toml\nthe config file (TOML; keys as the settings)",
        ".TP\n.I ~/.local/state/logctl/\nthe state directory: checkpoints, the ship lock, the default SQLite sink",
    ]
    status = [".SH EXIT STATUS"]
    for code in ExitCode:
        status.append(f".TP\n.B {int(code)}\n{_escape(_EXIT_MEANINGS[code])}")
    return "\n".join([*env, *files, *status])


def _header(name: str, summary: str) -> str:
    title = _escape(name.upper())
    head = f'.TH {title} 1 "" "logctl {__version__}" "logctl manual"'
    return f"{head}\n.SH NAME\n{_escape(name)} \\- {_escape(summary)}\n"


def command_page(words: tuple[str, ...], command: Any) -> str:
    name = "logctl-" + "-".join(words)
    doc = command.help or ""
    summary = doc.strip().partition("\n")[0]
    synopsis = " ".join(
        p.human_readable_name if p.required else f"[{p.human_readable_name}]"
        for p in command.params
        if p.param_type_name == "argument"
    )
    parts = [
        _header(name, summary.rstrip(".")),
        f".SH SYNOPSIS\n.B logctl {' '.join(words)}\n[OPTIONS] {_escape(synopsis)}",
        f".SH DESCRIPTION\n{_paragraphs(doc)}",
        f".SH OPTIONS\n{_options(command)}",
    ]
    if command.epilog:
        parts.append(f".SH EXAMPLES\n{_examples(command)}")
    parts.append(_common_sections())
    parts.append(".SH SEE ALSO\n.BR logctl (1)")
    return "\n".join(parts) + "\n"


def _first_line(text: str | None) -> str:
    return (text or "").strip().partition("\n")[0]


def main_page() -> str:
    root = typer.main.get_command(app)
    listing = "\n".join(
        f".TP\n.BR {_escape('logctl-' + '-'.join(words))} (1)\n{_escape(_first_line(cmd.help))}"
        for words, cmd in commands()
    )
    parts = [
        _header("logctl", "ship logs through RabbitMQ and operate the queues they travel on"),
        ".SH SYNOPSIS\n.B logctl\n[--debug] COMMAND [OPTIONS] [ARGS]",
        f".SH DESCRIPTION\n{_paragraphs(root.help or '')}",
        f".SH COMMANDS\n{listing}",
        _common_sections(),
    ]
    return "\n".join(parts) + "\n"


def man_pages() -> dict[str, str]:
    """File name -> roff text of every page."""
    pages = {"logctl.1": main_page()}
    for words, command in commands():
        pages[f"logctl-{'-'.join(words)}.1"] = command_page(words, command)
    return pages


def completions() -> dict[str, str]:
    """File name -> completion script, for bash, zsh and fish."""
    return {
        file: get_completion_script(prog_name="logctl", complete_var="_LOGCTL_COMPLETE", shell=shell)
        for shell, file in SHELLS.items()
    }


def write(man_dir: Path, completion_dir: Path) -> None:
    """Write every man page and completion script; remove pages of commands that are gone."""
    man_dir.mkdir(parents=True, exist_ok=True)
    completion_dir.mkdir(parents=True, exist_ok=True)
    pages = man_pages()
    for stale in man_dir.glob("logctl*.1"):
        if stale.name not in pages:
            stale.unlink()
    for name, text in pages.items():
        (man_dir / name).write_text(text)
    for name, text in completions().items():
        (completion_dir / name).write_text(text)


if __name__ == "__main__":
    write(Path(sys.argv[1]), Path(sys.argv[2]))
