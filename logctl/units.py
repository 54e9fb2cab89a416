"""Durations and sizes as operators write them: ``30s``, ``5m``, ``1MiB``."""

from __future__ import annotations

import re

from logctl.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_duration(text: str, what: str = "duration", *, unit_required: bool = False) -> float:
    """Return seconds for ``500ms``, ``30s``, ``5m``, ``2h``, ``7d`` (or bare seconds, unless ``unit_required``)."""
    match = _DURATION.match(text)
    if not match:
        raise ConfigError(f"{what}: {text!r} is not a duration (examples: 500ms, 30s, 5m, 2h, 7d)")
    if unit_required and match.group(2) is None:
        raise ConfigError(f"{what}: {text!r} has no unit: write 3d, 12h or 30m (a bare number is ambiguous here)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str, what: str = "size") -> int:
    """Return bytes for ``1048576``, ``512KiB``, ``1MiB``, ``1MB`` (all binary multiples)."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"{what}: {text!r} is not a size (examples: 65536, 512KiB, 1MiB)")
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * _SIZE_UNITS[unit]


def parse_address(text: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; port 0 for any free one) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{what} {text!r}: give HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)
