"""The command-line interface: a thin Typer layer over the library."""

from __future__ import annotations

from logctl.cli import bench, config_cmd, consume, policy, query, queue, replay, ship, status, tail  # noqa: F401  (registers the commands)
from logctl.cli.app import app


def main() -> None:
    """Console script entry point."""
    app()


__all__ = ["app", "main"]
