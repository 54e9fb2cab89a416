"""Confirmed, pipelined publishing that survives broker restarts.

The channel is put in confirm mode and many messages are in flight at once; the broker's
``basic.ack`` (possibly ``multiple``) hands each message's token back through
``on_confirm``. Only then does the caller count it as sent. If the connection drops,
every unconfirmed message is published again after reconnecting (at-least-once; the
record ids let sinks drop the duplicates). Nacked messages are published again too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import amqp

from logctl.transport.connection import CONNECTION_ERRORS, Broker, translated


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


class Publisher:
    """Publish persistent messages with publisher confirms, many in flight."""

    def __init__(
        self,
        broker: Broker,
        exchange: str,
        on_confirm: Callable[[object], None],
        max_in_flight: int,
        reconnect: bool = True,
        should_stop: Callable[[], bool] = lambda: False,
        confirm: bool = True,
    ) -> None:
        self.broker = broker
        self.exchange = exchange
        self.on_confirm = on_confirm
        self.max_in_flight = max_in_flight
        self.reconnect = reconnect
        self.should_stop = should_stop
        self.confirm = confirm  # False only for benchmarks: nothing is ever confirmed then
        self._inflight: dict[int, Outgoing] = {}
        self._resend: list[Outgoing] = []
        self._seq = 0
        self._channel: Any = None
        self._open()

    @property
    def in_flight(self) -> int:
        """Messages published and not yet confirmed."""
        return len(self._inflight) + len(self._resend)

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
        with translated(self.broker.settings.url):
            channel = self.broker.channel()
            if self.confirm:
                channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._channel = channel
        self._seq = 0

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
            self._channel.basic_publish(message, exchange=out.exchange or self.exchange, routing_key=out.routing_key)
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
        while self._resend and not self.broker.blocked:
            self._send(self._resend.pop(0))

    def _on_ack(self, tag: int, multiple: bool) -> None:
        inflight = self._inflight
        if not multiple:
            out = inflight.pop(tag, None)
            if out is not None:
                self.on_confirm(out.token)
            return
        while inflight:
            first = next(iter(inflight))
            if first > tag:
                break
            self.on_confirm(inflight.pop(first).token)

    def _on_nack(self, tag: int, multiple: bool) -> None:
        inflight = self._inflight
        tags = [t for t in inflight if t <= tag] if multiple else [tag]
        for t in tags:
            out = inflight.pop(t, None)
            if out is not None:
                self._resend.append(out)

    def _recover(self, exc: BaseException) -> None:
        """Reconnect (backing off, one notice per state change) and publish again all unconfirmed."""
        if not self.reconnect:
            with translated(self.broker.settings.url):
                raise exc
        # Everything unconfirmed goes again, in order, on the new channel (see _pump).
        self._resend[:0] = self._inflight.values()
        self._inflight.clear()
        self.broker.notify(f"connection to broker lost ({type(exc).__name__}); reconnecting")
        self.broker.reconnect(self.should_stop)
        self._open()
        self.broker.notify(f"reconnected to broker; publishing {len(self._resend)} unconfirmed message(s) again")
