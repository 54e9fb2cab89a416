"""Confirmed, pipelined publishing that survives broker restarts.

The channel is put in confirm mode and many messages are in flight at once; the broker's
``basic.ack`` (possibly ``multiple``) hands each message's token back through
``on_confirm``. Only then does the caller count it as sent. If the connection drops,
every unconfirmed message is published again after reconnecting (at-least-once; the
record ids let sinks drop the duplicates). Nacked messages are published again too,
after a pause that grows while nacks go on; a channel that nacks everything (a quorum
queue's channel left pointing at a leader that died) is replaced by a new one.

With ``mandatory`` the broker returns a message that no queue (and no alternate
exchange) takes, then acks it: such a message is never counted as confirmed. It goes to
``on_return`` when the caller has a use for it (replay leaves it where it was); otherwise
it is held and published again with backoff until a queue is bound, still in flight.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import amqp

from logctl import metrics
from logctl.transport.connection import CONNECTION_ERRORS, Broker, Delivery, translated


@dataclass(slots=True)
class Outgoing:
    """One message to publish; ``token`` comes back through ``on_confirm`` once confirmed."""

    body: bytes
    routing_key: str
    content_type: str
    token: object = None
    headers: Mapping[str, Any] | None = None
    exchange: str | None = None
    properties: Mapping[str, Any] | None = None
    returns: int = 0  # times the broker returned it as unroutable


RETURN_BACKOFF_MAX = 30.0
NACK_BACKOFF_MAX = 5.0
# Nacks in a row, with no ack between, after which the channel is taken for stale and
# replaced. Seen on RabbitMQ 3.10: a channel opened on a surviving node while a quorum
# queue's leader was being elected nacked every publish for good; a new channel is acked.
NACKS_BEFORE_NEW_CHANNEL = 3


def republished(
    delivery: Delivery, exchange: str, routing_key: str, headers: Mapping[str, Any], token: object
) -> Outgoing:
    """Return an Outgoing that publishes ``delivery`` again: body and properties intact, ``headers`` added."""
    properties = {
        k: v for k, v in delivery.properties.items() if k not in ("content_type", "delivery_mode") and v is not None
    }
    return Outgoing(
        delivery.body,
        routing_key,
        delivery.content_type or "application/octet-stream",
        token=token,
        headers={**delivery.headers, **headers},
        exchange=exchange,
        properties=properties,
    )


class Publisher:
    """Publish persistent messages with publisher confirms, many in flight."""

    def __init__(
        self,
        broker: Broker,
        exchange: str,
        on_confirm: Callable[[object], None],
        max_in_flight: int,
        *,
        reconnect: bool = True,
        should_stop: Callable[[], bool] = lambda: False,
        confirm: bool = True,
        mandatory: bool = False,
        on_return: Callable[[Outgoing], None] | None = None,
    ) -> None:
        self.broker = broker
        self.exchange = exchange
        self.on_confirm = on_confirm
        self.max_in_flight = max_in_flight
        self.reconnect = reconnect
        self.should_stop = should_stop
        self.confirm = confirm  # False only for benchmarks: nothing is ever confirmed then
        self.mandatory = mandatory
        self.on_return = on_return
        self._inflight: dict[int, Outgoing] = {}
        self._resend: list[Outgoing] = []
        self._returned: set[int] = set()  # in-flight sequence numbers the broker returned
        self._held: list[tuple[float, Outgoing]] = []  # returned, to be published again at a time
        self._unroutable: set[tuple[str, str]] = set()  # (exchange, key) told about once
        self._seq = 0
        self._nacks_in_row = 0
        self._replacing = False
        self._channel: Any = None
        self._open()

    @property
    def in_flight(self) -> int:
        """Messages published and not yet confirmed."""
        return len(self._inflight) + len(self._resend) + len(self._held)

    def publish(self, out: Outgoing) -> None:
        """Publish ``out``, first waiting while the window is full or the broker blocks us.

        Told to stop while blocked, it keeps ``out`` unsent (and unconfirmed) rather than
        wait for the broker's alarm to clear.
        """
        while self.in_flight >= self.max_in_flight or self.broker.blocked:
            if self.broker.blocked and self.should_stop():
                self._resend.append(out)
                return
            self._pump(1.0)
        self._send(out)

    def poll(self) -> None:
        """Handle confirms that have arrived, without waiting."""
        self._pump(0)

    def end_round(self) -> None:
        """The caller sent all it had due for now: handle confirms, as ``poll``."""
        self._pump(0)

    def wait_confirmed(self, timeout: float | None = None) -> bool:
        """Wait until every published message is confirmed; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.in_flight:
            remaining = 1.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._pump(min(remaining, 1.0))
        return True

    def close(self) -> None:
        """Close the channel; unconfirmed messages stay unconfirmed (the caller decides)."""
        if self._channel is not None:
            with contextlib.suppress(Exception):  # closing a channel of a dead connection
                self._channel.close()
            self._channel = None

    # --- internals -------------------------------------------------------------------------

    def _open(self) -> None:
        with translated(self.broker.url):
            channel = self.broker.channel()
            if self.confirm:
                channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self._channel = channel
        self._seq = 0
        self._nacks_in_row = 0
        self._returned.clear()

    def _send(self, out: Outgoing) -> None:
        properties = dict(out.properties or {})
        message = amqp.Message(
            out.body,
            content_type=out.content_type,
            delivery_mode=2,
            application_headers=dict(out.headers or {}),
            **properties,
        )
        self._seq += 1
        self._inflight[self._seq] = out
        try:
            self._channel.basic_publish(
                message, exchange=self._exchange_of(out), routing_key=out.routing_key, mandatory=self.mandatory
            )
        except CONNECTION_ERRORS as exc:
            self._recover(exc)
            return
        if not self.confirm:
            self._on_ack(self._seq, False)

    def _pump(self, timeout: float) -> None:
        try:
            self.broker.drain(timeout)
        except CONNECTION_ERRORS as exc:
            self._recover(exc)
        if self._replacing:
            self._replace_channel()
        if self._held:
            self._release_held()
        while self._resend and not self.broker.blocked:
            self._send(self._resend.pop(0))

    def _on_ack(self, tag: int, multiple: bool) -> None:
        self._nacks_in_row = 0
        inflight = self._inflight
        if not multiple:
            out = inflight.pop(tag, None)
            if out is not None:
                self._settle(tag, out)
            return
        while inflight:
            first = next(iter(inflight))
            if first > tag:
                break
            self._settle(first, inflight.pop(first))

    def _settle(self, tag: int, out: Outgoing) -> None:
        """An acked message: confirmed, unless the broker returned it first."""
        if self._returned and tag in self._returned:
            self._returned.discard(tag)
            out.returns += 1
            if self.on_return is not None:
                self.on_return(out)
                return
            self._hold(out)
            return
        if out.returns:
            self._routed_again(out)
        self.on_confirm(out.token)

    def _on_return(self, _exc: object, exchange: str, routing_key: str, message: Any) -> None:
        """basic.return (before the message's ack): mark the first in-flight message it matches.

        A return names no sequence number; messages in flight with the same exchange, key
        and body are interchangeable for what follows, so the first unmarked one is taken.
        """
        body = bytes(message.body)
        for tag, out in self._inflight.items():
            if (
                tag not in self._returned
                and out.routing_key == routing_key
                and self._exchange_of(out) == exchange
                and out.body == body
            ):
                self._returned.add(tag)
                return

    def _hold(self, out: Outgoing) -> None:
        """Keep a returned message to publish again later, backing off; say so once per key."""
        exchange = self._exchange_of(out)
        if (exchange, out.routing_key) not in self._unroutable:
            self._unroutable.add((exchange, out.routing_key))
            self.broker.notify(
                f"no queue is bound for routing key {out.routing_key!r} on exchange {exchange!r} and it has no "
                "alternate exchange: holding those records unconfirmed and retrying until a queue is bound "
                "(or apply the policy preset unrouted-ae)"
            )
        metrics.METRICS.republished("unroutable", 1)
        delay = min(0.5 * 2**out.returns, RETURN_BACKOFF_MAX)
        self._held.append((time.monotonic() + delay, out))

    def _release_held(self) -> None:
        now = time.monotonic()
        due = [out for when, out in self._held if when <= now]
        if due:
            self._held = [(when, out) for when, out in self._held if when > now]
            self._resend.extend(due)

    def _routed_again(self, out: Outgoing) -> None:
        key = (self._exchange_of(out), out.routing_key)
        if key in self._unroutable:
            self._unroutable.discard(key)
            self.broker.notify(f"routing key {out.routing_key!r} on exchange {key[0]!r} is routed again; resuming")

    def _exchange_of(self, out: Outgoing) -> str:
        return self.exchange if out.exchange is None else out.exchange

    def _on_nack(self, tag: int, multiple: bool) -> None:
        inflight = self._inflight
        tags = [t for t in inflight if t <= tag] if multiple else [tag]
        self._nacks_in_row += 1
        delay = min(0.05 * 2**self._nacks_in_row, NACK_BACKOFF_MAX)
        for t in tags:
            self._returned.discard(t)
            out = inflight.pop(t, None)
            if out is not None:
                self._held.append((time.monotonic() + delay, out))
                metrics.METRICS.republished("nacked", 1)
        if self._nacks_in_row >= NACKS_BEFORE_NEW_CHANNEL and not self._replacing:
            self._replacing = True  # this runs inside the channel's own frame handling: replace it after

    def _replace_channel(self) -> None:
        """A new channel for a stale one; what was in flight on the old one goes again."""
        self._replacing = False
        self.broker.notify(f"broker nacked {self._nacks_in_row} publishes in a row; opening a new channel")
        self._resend[:0] = self._inflight.values()
        self._inflight.clear()
        self._returned.clear()
        nacks = self._nacks_in_row
        self.close()
        try:
            self._open()
        except CONNECTION_ERRORS as exc:
            self._recover(exc)
        self._nacks_in_row = nacks  # the pause keeps growing until a publish is acked

    def _recover(self, exc: BaseException) -> None:
        """Reconnect (backing off, one notice per state change) and publish again all unconfirmed."""
        if not self.reconnect:
            with translated(self.broker.url):
                raise exc
        # Everything unconfirmed goes again, in order, on the new channel (see _pump).
        self._resend[:0] = self._inflight.values()
        metrics.METRICS.republished("connection_lost", len(self._resend))
        self._inflight.clear()
        self._returned.clear()
        self.broker.recover(exc, self.should_stop, self._open)
        self.broker.notify(f"reconnected to broker; publishing {len(self._resend)} unconfirmed message(s) again")
