"""Values for shell completion: fixed choices, preset names, and queue names from the management API.

They run inside a completion request, so they are quick and silent: on any error
(no broker, no management plugin, a bad config) they offer nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from logctl.cli.app import settings_from
from logctl.errors import LogctlError
from logctl.management import management_client
from logctl.policy import preset_names


def choices(*values: str) -> Callable[[str], list[str]]:
    """Complete an option from a fixed set of values (rather than file names)."""
    return lambda incomplete: [v for v in values if v.lower().startswith(incomplete.lower())]


LEVELS = choices("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SERIALIZERS = choices("msgpack", "json")
CONSUME_QUEUE_TYPES = choices("quorum", "classic")
BENCH_QUEUE_TYPES = choices("classic", "quorum", "stream")
COUNT_BY = choices("level", "service", "1m", "5m", "1h", "1d")
REDACTIONS = choices("email", "bearer", "url-password", "credit-card", "aws-key")  # processing.PRESETS


def presets(incomplete: str) -> list[str]:
    """Preset names after ``policy apply|show|diff``."""
    return [name for name in preset_names() if name.startswith(incomplete)]


def queues(incomplete: str) -> list[str]:
    """Queue names of the vhost (``dlq`` first), after ``replay`` and ``consume --queue``."""
    try:
        settings = settings_from()
        vhost = urlsplit(settings.primary_url).path[1:] or "/"
        names = [str(q["name"]) for q in management_client(settings, timeout=1.0).queues(vhost)]
    except (LogctlError, OSError, ValueError, KeyError):
        names = []  # the API is away: still offer dlq, the name replay knows by itself
    return [name for name in ["dlq", *sorted(names)] if name.startswith(incomplete)]
