"""Queues of the topology as operators see them, and bindings changed at runtime.

``list_queues`` reads the management API: every queue bound to the main exchange, plus
logctl's unrouted and dead-letter queues, with bindings, depth and consumers.
``bind``/``unbind`` go through AMQP, so a running consumer's queue starts (or stops)
receiving a routing pattern at once, without a restart: turning an ERROR-only worker
into one that takes everything and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from logctl.config import Settings
from logctl.errors import NotFound
from logctl.management import Management, broker_management
from logctl.transport import Broker, Topology, bind_queue, queue_exists, unbind_queue


@dataclass(frozen=True, slots=True)
class QueueView:
    """One queue: its bindings from the main exchange, depth and consumers."""

    name: str
    type: str
    patterns: tuple[str, ...]
    messages: int
    ready: int
    unacked: int
    consumers: int
    publish_rate: float = 0.0  # messages a second, as the management API averages them
    deliver_rate: float = 0.0
    role: str = ""  # "dlq" or "unrouted" for logctl's own: what should stay empty
    records_rate: float | None = None  # records a second routed to it, from top's tap (None: not measured)

    @property
    def needs_attention(self) -> bool:
        """A dead-letter or unrouted queue that holds messages."""
        return bool(self.role) and self.messages > 0


def _vhost(settings: Settings) -> str:
    return urlsplit(settings.primary_url).path[1:] or "/"


def list_queues(
    settings: Settings, topology: Topology, *, all_queues: bool = False, api: Management | None = None
) -> list[QueueView]:
    """The topology's queues (or, with ``all_queues``, every queue of the vhost), by name.

    ``api``: a management client already checked to be this broker's (``top`` checks once).
    """
    api = api or broker_management(settings)
    vhost = _vhost(settings)
    patterns: dict[str, list[str]] = {}
    for binding in api.exchange_bindings(vhost, topology.exchange):
        if binding.get("destination_type") == "queue":
            patterns.setdefault(str(binding["destination"]), []).append(str(binding.get("routing_key", "")))
    wanted = set(patterns) | {topology.unrouted_queue, topology.dead_letter_queue}
    views = []
    for q in api.queues(vhost):
        name = str(q["name"])
        if not all_queues and name not in wanted:
            continue
        views.append(
            QueueView(
                name=name,
                type=str(q.get("type", "")),
                patterns=tuple(sorted(patterns.get(name, ()))),
                messages=int(q.get("messages") or 0),
                ready=int(q.get("messages_ready") or 0),
                unacked=int(q.get("messages_unacknowledged") or 0),
                consumers=int(q.get("consumers") or 0),
                publish_rate=_rate(q, "publish_details"),
                deliver_rate=_rate(q, "deliver_get_details"),
                role="dlq"
                if name == topology.dead_letter_queue
                else "unrouted"
                if name == topology.unrouted_queue
                else "",
            )
        )
    return sorted(views, key=lambda v: v.name)


def _rate(queue: dict[str, object], details: str) -> float:
    stats = queue.get("message_stats")
    if not isinstance(stats, dict):
        return 0.0
    found = stats.get(details)
    return float(found.get("rate", 0.0)) if isinstance(found, dict) else 0.0


def _existing(broker: Broker, queue: str) -> None:
    if not queue_exists(broker, queue):
        raise NotFound(f"queue {queue!r} does not exist (logctl queue list shows the topology's queues)")


def bind(broker: Broker, topology: Topology, queue: str, pattern: str) -> None:
    """Bind ``queue`` to the main exchange by ``pattern``; a consumer on it receives those records from now on."""
    _existing(broker, queue)
    bind_queue(broker, queue, topology.exchange, pattern)


def unbind(broker: Broker, topology: Topology, queue: str, pattern: str) -> None:
    """Remove the binding of ``queue`` by ``pattern`` (what is queued already stays)."""
    _existing(broker, queue)
    unbind_queue(broker, queue, topology.exchange, pattern)
