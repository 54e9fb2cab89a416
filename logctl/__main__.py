"""``python -m logctl``."""

from __future__ import annotations

from logctl.cli import main

main()
