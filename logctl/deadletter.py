"""Setting aside what consume cannot decode, so that nothing it reports dead-lettered is gone.

A queue that dead-letters (it has a dead-letter exchange with somewhere to route to)
gets a plain reject, and the broker moves the message with its ``x-death`` headers. A
queue that does not (someone else's, or one whose dead-letter settings cannot be read)
would simply delete a rejected message, so the message is published to logctl's
dead-letter queue by consume itself, confirmed, with ``x-logctl-death-*`` headers saying
where it came from and why (``replay`` reads them), and only then acked.

Where there is nowhere to put it (consume reads the dead-letter queue itself, or that
queue does not exist) the message is kept: left unacked, so it returns to its queue, in
place, when consume stops.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from logctl.errors import LogctlError
from logctl.management import broker_management
from logctl.transport import (
    Broker,
    Delivery,
    Outgoing,
    Publisher,
    QueueReader,
    Topology,
    exchange_exists,
    republished,
)

# Headers of a message logctl dead-lettered by hand (the broker's own are x-death).
DEATH_QUEUE = "x-logctl-death-queue"
DEATH_REASON = "x-logctl-death-reason"
DEATH_ERROR = "x-logctl-death-error"
DEATH_EXCHANGE = "x-logctl-death-exchange"
DEATH_ROUTING_KEY = "x-logctl-death-routing-key"
DEATH_TIME = "x-logctl-death-time"
CONFIRM_TIMEOUT_S = 30.0


def queue_dead_letters(broker: Broker, topology: Topology, queue: str, declared_now: bool) -> tuple[bool, str]:
    """Whether a rejected message of ``queue`` reaches a dead-letter queue, and why (or why not).

    Unknown counts as no: the cost of a wrong no is one confirmed publish per bad message,
    the cost of a wrong yes is the message.
    """
    ours = topology.dead_letter_exchange
    if declared_now:
        return True, f"declared now, dead-lettering to {ours!r}"
    settings = broker.settings
    vhost = urlsplit(settings.primary_url).path[1:] or "/"
    try:
        api = broker_management(settings, broker, timeout=5)
        dlx = api.queue_dead_letter_exchange(vhost, queue)
        if dlx is None:
            return False, "it has no dead-letter exchange"
        if not exchange_exists(broker, dlx):
            return False, f"its dead-letter exchange {dlx!r} does not exist"
        if dlx != ours and not api.exchange_has_bindings(vhost, dlx):
            return False, f"nothing is bound to its dead-letter exchange {dlx!r}"
    except LogctlError as exc:
        return False, f"its dead-letter settings cannot be read ({exc})"
    return True, f"it dead-letters to {dlx!r}"


class DeadLetterer:
    """Set aside one undecodable delivery at a time: reject, a confirmed publish to the DLQ, or keep."""

    def __init__(self, broker: Broker, topology: Topology, queue: str, dead_letters: bool) -> None:
        self.broker = broker
        self.topology = topology
        self.queue = queue
        self.dead_letters = dead_letters
        self.keeping = queue == topology.dead_letter_queue  # nowhere further to go
        self._publish_broker: Broker | None = None
        self._publisher: Publisher | None = None
        self._confirmed = False
        self._returned = False

    def set_aside(self, delivery: Delivery, reader: QueueReader, error: str) -> bool:
        """Move ``delivery`` into a dead-letter queue (True), or keep it unacked where it is (False).

        Once a delivery is kept, the caller must ack others one by one: a ``multiple``
        ack would take the kept one with them.
        """
        if self.keeping:
            return False
        if self.dead_letters:
            reader.reject(delivery.delivery_tag)
            return True
        publisher = self._publisher or self._open()
        self._confirmed = self._returned = False
        publisher.publish(self._outgoing(delivery, error))
        publisher.wait_confirmed(CONFIRM_TIMEOUT_S)
        if not self._confirmed:
            dlq = self.topology.dead_letter_queue
            why = f"queue {dlq!r} does not exist" if self._returned else "the broker did not confirm the copy"
            self.broker.notify(
                f"cannot set aside undecodable messages of {self.queue!r} ({why}); keeping them in "
                f"{self.queue!r}, unacked until consume stops"
            )
            self.keeping = True
            return False
        reader.ack(delivery.delivery_tag)
        return True

    def plan(self, why: str) -> str | None:
        """What happens to undecodable messages, for the operator, if not the usual reject."""
        if self.keeping:
            return f"consuming the dead-letter queue {self.queue!r} itself: undecodable messages stay in it"
        if self.dead_letters:
            return None
        return (
            f"queue {self.queue!r} cannot dead-letter: {why}; undecodable messages go to "
            f"{self.topology.dead_letter_queue!r} by consume itself (confirmed, then acked)"
        )

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.close()
        if self._publish_broker is not None:
            self._publish_broker.close()

    def _open(self) -> Publisher:
        # A connection of its own: a broker blocking publishers must not stall the consumer.
        self._publish_broker = Broker(self.broker.settings, self.broker.notify)
        self._publish_broker.connect(self.broker.settings.connect_retries)
        self._publisher = Publisher(
            self._publish_broker, "", self._on_confirm, max_in_flight=1, mandatory=True, on_return=self._on_return
        )
        return self._publisher

    def _outgoing(self, delivery: Delivery, error: str) -> Outgoing:
        headers = {
            DEATH_QUEUE: self.queue,
            DEATH_REASON: "rejected",
            DEATH_ERROR: error[:1000],
            DEATH_EXCHANGE: delivery.exchange,
            DEATH_ROUTING_KEY: delivery.routing_key,
            DEATH_TIME: datetime.now(UTC).replace(microsecond=0),
        }
        return republished(delivery, "", self.topology.dead_letter_queue, headers, token=delivery.delivery_tag)

    def _on_confirm(self, _token: object) -> None:
        self._confirmed = True

    def _on_return(self, _out: Outgoing) -> None:
        self._returned = True
