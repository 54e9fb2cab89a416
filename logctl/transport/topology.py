"""Topology: the exchanges and queues logctl declares."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import amqp.exceptions
import kombu

from logctl.config import Settings
from logctl.errors import NotFound
from logctl.transport.connection import Broker, translated

# Names derived from the main exchange (``logs`` by default).
UNROUTED_SUFFIX = ".unrouted"
DLX_SUFFIX = ".dlx"
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class Topology:
    """The exchanges and queues logctl relies on, named after the main exchange.

    ``default_queue`` (bound to ``#``) is where records wait for ``logctl consume`` when
    nobody declared another queue; ``None`` leaves it out.
    """

    exchange: str
    default_queue: str | None = None

    @property
    def unrouted_exchange(self) -> str:
        return self.exchange + UNROUTED_SUFFIX

    @property
    def unrouted_queue(self) -> str:
        return self.exchange + UNROUTED_SUFFIX

    @property
    def dead_letter_exchange(self) -> str:
        return self.exchange + DLX_SUFFIX

    @property
    def dead_letter_queue(self) -> str:
        return self.exchange + DLQ_SUFFIX


@contextlib.contextmanager
def _channel(broker: Broker) -> Iterator[Any]:
    """A channel of its own for one operation (a failed passive declare closes it), then closed."""
    with translated(broker.settings.url):
        channel = broker.channel()
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):  # the channel may already be closed by the broker
                channel.close()


def declare_topology(broker: Broker, topology: Topology) -> None:
    """Declare the main topic exchange with its alternate exchange, and the dead-letter pair."""
    with _channel(broker) as channel:
        unrouted = kombu.Exchange(topology.unrouted_exchange, "fanout", durable=True)
        unrouted.declare(channel=channel)
        quorum = {"x-queue-type": "quorum"}
        kombu.Queue(topology.unrouted_queue, unrouted, durable=True, queue_arguments=quorum).declare(channel=channel)
        main = kombu.Exchange(
            topology.exchange, "topic", durable=True, arguments={"alternate-exchange": topology.unrouted_exchange}
        )
        main.declare(channel=channel)
        dlx = kombu.Exchange(topology.dead_letter_exchange, "fanout", durable=True)
        dlx.declare(channel=channel)
        kombu.Queue(topology.dead_letter_queue, dlx, durable=True, queue_arguments=quorum).declare(channel=channel)
    if topology.default_queue:
        declare_consumer_queue(broker, topology, topology.default_queue, ("#",))


def declare_consumer_queue(
    broker: Broker, topology: Topology, queue: str, patterns: Sequence[str], queue_type: str = "quorum"
) -> None:
    """Declare a durable consumer queue, dead-lettering to the DLX, bound by ``patterns``."""
    arguments: dict[str, Any] = {"x-queue-type": queue_type, "x-dead-letter-exchange": topology.dead_letter_exchange}
    if queue_type == "quorum":
        arguments["x-delivery-limit"] = broker.settings.delivery_limit
    with _channel(broker) as channel:
        exchange = kombu.Exchange(topology.exchange, "topic", durable=True, no_declare=True)
        kombu.Queue(queue, exchange, durable=True, queue_arguments=arguments, bindings=[]).declare(channel=channel)
        for pattern in patterns:
            channel.queue_bind(queue, topology.exchange, pattern)


def declare_plain_queue(broker: Broker, queue: str, queue_type: str, exchange: str, pattern: str) -> None:
    """Declare a durable queue of ``queue_type`` (no dead-lettering) bound to ``exchange`` by ``pattern``."""
    with _channel(broker) as channel:
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments={"x-queue-type": queue_type})
        channel.queue_bind(queue, exchange, pattern)


def declare_tail_queue(
    broker: Broker,
    channel: Any,
    exchange: str,
    patterns: Sequence[str],
    max_length: int,
    overflow_to: str | None = None,
) -> str:
    """Declare a server-named exclusive queue bounded to ``max_length`` messages.

    The oldest messages are dropped past the bound; with ``overflow_to`` they are
    dead-lettered to that queue instead, so the dropped ones can be counted.
    """
    arguments: dict[str, Any] = {"x-max-length": max_length, "x-overflow": "drop-head"}
    if overflow_to is not None:
        arguments.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": overflow_to})
    with translated(broker.settings.url):
        name, _count, _consumers = channel.queue_declare("", exclusive=True, auto_delete=True, arguments=arguments)
        for pattern in patterns:
            channel.queue_bind(name, exchange, pattern)
    return str(name)


def declare_counter_queue(broker: Broker, channel: Any, max_length: int) -> str:
    """Declare a server-named exclusive queue that only collects messages to be counted."""
    arguments = {"x-max-length": max_length, "x-overflow": "drop-head"}
    with translated(broker.settings.url):
        name, _count, _consumers = channel.queue_declare("", exclusive=True, auto_delete=True, arguments=arguments)
    return str(name)


def queue_exists(broker: Broker, queue: str) -> bool:
    """Whether ``queue`` exists."""
    with _channel(broker) as channel:
        try:
            channel.queue_declare(queue, passive=True)
        except amqp.exceptions.NotFound:
            return False
    return True


def exchange_exists(broker: Broker, exchange: str) -> bool:
    """Whether ``exchange`` exists ("" is the default exchange, which always does)."""
    if exchange == "":
        return True
    with _channel(broker) as channel:
        try:
            channel.exchange_declare(exchange, "topic", passive=True)
        except amqp.exceptions.NotFound:
            return False
    return True


def ensure_consumer_queue(
    broker: Broker, topology: Topology, queue: str, patterns: Sequence[str], queue_type: str = "quorum"
) -> None:
    """Use an existing queue as it is (adding only the bindings asked for); declare a missing one.

    A missing queue is bound to ``patterns``, or to ``#`` when none are given.
    """
    if not queue_exists(broker, queue):
        declare_consumer_queue(broker, topology, queue, patterns or ("#",), queue_type)
        return
    with _channel(broker) as channel:
        for pattern in patterns:
            channel.queue_bind(queue, topology.exchange, pattern)


def queue_depth(broker: Broker, queue: str) -> int:
    """Return how many messages wait in ``queue``; NotFound if it does not exist."""
    with _channel(broker) as channel:
        try:
            _name, count, _consumers = channel.queue_declare(queue, passive=True)
        except amqp.exceptions.NotFound as exc:
            raise NotFound(f"queue {queue!r} does not exist") from exc
    return int(count)


def default_queue_name(settings: Settings) -> str | None:
    """Return the default consumer queue: the setting, else ``<exchange>.default``; None if "none"."""
    if settings.default_queue.lower() == "none":
        return None
    return settings.default_queue or f"{settings.exchange}.default"


def topology_of(settings: Settings) -> Topology:
    """Return the topology the settings name."""
    return Topology(settings.exchange, default_queue_name(settings))


def delete_topology(broker: Broker, topology: Topology, queues: Sequence[str] = ()) -> None:
    """Delete a topology's exchanges and queues (benchmarks clean up after themselves)."""
    names = [topology.unrouted_queue, topology.dead_letter_queue, *queues]
    if topology.default_queue:
        names.append(topology.default_queue)
    with _channel(broker) as channel:
        for queue in names:
            channel.queue_delete(queue)
        for exchange in (topology.exchange, topology.unrouted_exchange, topology.dead_letter_exchange):
            channel.exchange_delete(exchange)
