"""The one package that talks AMQP (kombu over py-amqp).

Everything above it sees our types: ``Broker`` (a connection), ``Publisher``
(confirmed, pipelined publishing that survives reconnects), ``QueueReader``
(deliveries with manual acks), ``Delivery`` and ``Topology``. kombu and amqp exceptions
are turned into LogctlErrors here and nowhere else.
"""

from __future__ import annotations

from logctl.transport.connection import Broker, Delivery, preload, translate, translated
from logctl.transport.publisher import Outgoing, Publisher, republished
from logctl.transport.reader import QueuePuller, QueueReader
from logctl.transport.topology import (
    Topology,
    TopologyOnce,
    bind_queue,
    declare_consumer_queue,
    declare_counter_queue,
    declare_plain_queue,
    declare_tail_queue,
    declare_topology,
    default_queue_name,
    delete_topology,
    ensure_consumer_queue,
    exchange_exists,
    open_publisher,
    queue_depth,
    queue_exists,
    require_exchange,
    topology_of,
    unbind_queue,
)

__all__ = [
    "Broker",
    "Delivery",
    "Outgoing",
    "Publisher",
    "QueuePuller",
    "QueueReader",
    "Topology",
    "TopologyOnce",
    "bind_queue",
    "declare_consumer_queue",
    "declare_counter_queue",
    "declare_plain_queue",
    "declare_tail_queue",
    "declare_topology",
    "default_queue_name",
    "delete_topology",
    "ensure_consumer_queue",
    "exchange_exists",
    "open_publisher",
    "preload",
    "queue_depth",
    "queue_exists",
    "republished",
    "require_exchange",
    "topology_of",
    "translate",
    "translated",
    "unbind_queue",
]
