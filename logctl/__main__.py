"""``python -m logctl``."""

from __future__ import annotations

from logctl.cli import main

if __name__ == "__main__":  # not when a worker process imports this as __mp_main__
    main()
