"""Reading queues: deliveries in our terms, manual acks, bounded prefetch."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from logctl.transport.connection import Broker, Delivery, translated

_ALREADY_ARRIVED = 0.001  # seconds a drain waits when it only takes what is on the wire


def _delivery(message: Any) -> Delivery:
    info = message.delivery_info
    props = dict(message.properties)
    headers = props.pop("application_headers", None) or {}
    return Delivery(
        body=bytes(message.body),
        content_type=props.get("content_type"),
        message_id=props.get("message_id"),
        delivery_tag=int(info["delivery_tag"]),
        routing_key=str(info.get("routing_key", "")),
        exchange=str(info.get("exchange", "")),
        redelivered=bool(info.get("redelivered", False)),
        headers=headers,
        properties=props,
    )


class QueueReader:
    """Consume one queue; ``fetch`` returns what arrived, ``ack``/``reject`` settle it.

    With ``auto_ack`` the broker forgets a message as soon as it is sent (``tail``).
    """

    def __init__(
        self, broker: Broker, queue: str, prefetch: int, *, auto_ack: bool = False, channel: Any = None
    ) -> None:
        self.broker = broker
        self.queue = queue
        self._buffer: deque[Delivery] = deque()
        with translated(broker.url):
            self._channel = channel if channel is not None else broker.channel()
            if not auto_ack:
                self._channel.basic_qos(0, prefetch, False)
            self._tag = self._channel.basic_consume(queue, callback=self._on_message, no_ack=auto_ack)

    def _on_message(self, message: Any) -> None:
        self._buffer.append(_delivery(message))

    def fetch(self, max_count: int, timeout: float) -> list[Delivery]:
        """Return up to ``max_count`` deliveries: wait at most ``timeout`` for the first, then
        take only what has already arrived.

        It never waits for the rest: with the prefetch window full of unacked deliveries
        the broker sends nothing more, and waiting for it would stall every batch.
        """
        deadline = time.monotonic() + timeout
        buffer = self._buffer
        with translated(self.broker.url):
            while not buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.broker.drain(remaining)
            if timeout > 0:
                while len(buffer) < max_count and self.broker.drain(_ALREADY_ARRIVED):
                    pass
        count = min(max_count, len(buffer))
        return [buffer.popleft() for _ in range(count)]

    def give_back(self, deliveries: list[Delivery]) -> None:
        """Return deliveries taken by ``fetch`` but not used: the next fetch returns them first."""
        self._buffer.extendleft(reversed(deliveries))

    def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        """Acknowledge one delivery, or with ``multiple`` every one up to it."""
        with translated(self.broker.url):
            self._channel.basic_ack(delivery_tag, multiple=multiple)

    def reject(self, delivery_tag: int) -> None:
        """Reject one delivery without requeueing it: the queue dead-letters it."""
        with translated(self.broker.url):
            self._channel.basic_reject(delivery_tag, requeue=False)

    def close(self) -> None:
        """Cancel the consumer and close the channel; unacked deliveries go back to the queue."""
        try:
            self._channel.basic_cancel(self._tag)
            self._channel.close()
        except Exception:  # noqa: BLE001 - the connection may already be gone
            pass


class QueuePuller:
    """Take messages one by one with ``basic.get`` (no prefetch window to fill).

    What is not acked goes back to the queue, in its order, when the puller closes.
    """

    def __init__(self, broker: Broker, queue: str) -> None:
        self.broker = broker
        self.queue = queue
        with translated(broker.url):
            self._channel = broker.channel()

    def get(self) -> Delivery | None:
        """Return the next message, or None when the queue has no more ready."""
        with translated(self.broker.url):
            message = self._channel.basic_get(self.queue, no_ack=False)
        return None if message is None else _delivery(message)

    def ack(self, delivery_tag: int) -> None:
        with translated(self.broker.url):
            self._channel.basic_ack(delivery_tag)

    def close(self) -> None:
        """Close the channel: every unacked message returns to the queue."""
        with translated(self.broker.url):
            self._channel.close()
