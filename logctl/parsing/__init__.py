"""Turning lines into records: format detection, field mapping, multi-line joining."""

from __future__ import annotations

from logctl.parsing.lines import LineParser, parse_text

__all__ = ["LineParser", "parse_text"]
