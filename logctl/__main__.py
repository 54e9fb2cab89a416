"""``python -m logctl``, and the ``logctl`` console script.

The CLI is imported inside ``main``: ship's parse workers start by importing the main
module (multiprocessing's spawn), and they need none of Typer, rich or kombu.
"""

from __future__ import annotations


def main() -> None:
    from logctl.cli import main as cli_main

    cli_main()


if __name__ == "__main__":  # not when a worker process imports this as __mp_main__
    main()
