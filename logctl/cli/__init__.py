"""The command-line interface: a thin Typer layer over the library."""

from __future__ import annotations

import sys

from logctl.cli import bench, config_cmd, consume, policy, query, queue, replay, ship, status, tail  # noqa: F401  (registers the commands)
from logctl.cli.app import app

GLOBAL_FLAGS = ("-q", "--quiet", "--debug")  # options of logctl itself, accepted after the command too


def main() -> None:
    """Console script entry point."""
    app(args=hoist_global_flags(sys.argv[1:]))


def hoist_global_flags(args: list[str]) -> list[str]:
    """``logctl ship x.log -q`` as ``logctl -q ship x.log``: flags of logctl itself move before the command.

    Nothing after ``--`` moves (there they are file names or words).
    """
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in GLOBAL_FLAGS]
    if not flags or (args and args[0] in GLOBAL_FLAGS and len(flags) == 1):
        return args
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    return [*dict.fromkeys(flags), *rest, *args[end:]]


__all__ = ["app", "main"]
