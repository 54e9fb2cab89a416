"""Dead-letter replay: restore each message's origin, publish it confirmed, then ack it.

Order of operations is the whole point: a message leaves the dead-letter queue only
after the broker confirmed its copy at the destination. Killed at any moment, replay
loses nothing; at worst a message is published twice, and consumers drop the
duplicate by record id. Messages that do not match the filters are never acked, so
they return to the dead-letter queue in their order when the channel closes.

The destination is the queue that dead-lettered the message, through the default
exchange: only that queue gets it back, not every queue bound to its routing key
(those never rejected it). Publishes are ``mandatory``: a message whose queue (or route,
with ``--to-exchange``) no longer exists comes back from the broker and stays in the
dead-letter queue, reported as ``unroutable``.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from logctl.codec import decode_rows
from logctl.deadletter import DEATH_ERROR, DEATH_EXCHANGE, DEATH_QUEUE, DEATH_REASON, DEATH_ROUTING_KEY, DEATH_TIME
from logctl.errors import BadInput, BrokerUnreachable, NotFound
from logctl.records import Level, routing_word
from logctl.transport import (
    Broker,
    Delivery,
    Outgoing,
    Publisher,
    QueuePuller,
    exchange_exists,
    queue_depth,
    queue_exists,
    republished,
)

REPLAYS_HEADER = "x-logctl-replays"
RECONNECT_FOR = 120.0  # seconds a replay that lost its connection tries to get one back
REASONS = ("rejected", "expired", "maxlen", "delivery_limit")


class Outcome(StrEnum):
    MOVED = "moved"
    FILTERED = "filtered"  # did not match the filters: left in place
    NO_DEATH = "no_x_death"  # published there by hand: nowhere to go back to
    TOO_MANY = "max_replays"  # replayed too often already: loop guard
    UNROUTABLE = "unroutable"  # its destination no longer exists: left in place


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a dead-lettered message came from, read from its ``x-death`` headers."""

    exchange: str
    routing_key: str
    queue: str
    reason: str
    died_at: datetime | None


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    reasons: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    levels: frozenset[Level] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, origin: Origin) -> bool:
        service, _, level = origin.routing_key.rpartition(".")
        if self.reasons and origin.reason not in self.reasons:
            return False
        if self.services and service not in self.services:
            return False
        if self.levels and level.upper() not in {lvl.value for lvl in self.levels}:
            return False
        if origin.died_at is not None:
            if self.since is not None and origin.died_at < self.since:
                return False
            if self.until is not None and origin.died_at > self.until:
                return False
        return True


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    queue: str
    filter: ReplayFilter = ReplayFilter()
    limit: int | None = None
    to_exchange: str | None = None
    to_routing_key: str | None = None
    to_queue: str | None = None
    max_replays: int = 3
    dry_run: bool = False

    @property
    def has_override(self) -> bool:
        return self.to_exchange is not None or self.to_queue is not None or self.to_routing_key is not None


@dataclass(slots=True)
class ReplayReport:
    """Counts per outcome, and per (origin queue, routing key, reason, detail, outcome)."""

    outcomes: Counter[Outcome] = field(default_factory=Counter)
    rows: Counter[tuple[str, str, str, str, Outcome]] = field(default_factory=Counter)

    @property
    def moved(self) -> int:
        return self.outcomes[Outcome.MOVED]

    @property
    def left(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome is not Outcome.MOVED)


def _utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return None


def origin_of(headers: Mapping[str, Any]) -> Origin | None:
    """Return the first death of a message (x-first-death-* and its x-death entry), or None.

    A message consume set aside by hand (its queue could not dead-letter) carries
    ``x-logctl-death-*`` headers instead.
    """
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths:
        return _set_aside_origin(headers)
    queue = headers.get("x-first-death-queue")
    first = next((d for d in deaths if isinstance(d, dict) and d.get("queue") == queue), deaths[-1])
    if not isinstance(first, dict):
        return None
    keys = first.get("routing-keys") or [""]
    return Origin(
        exchange=str(headers.get("x-first-death-exchange", first.get("exchange", ""))),
        routing_key=str(keys[0]),
        queue=str(first.get("queue", queue or "")),
        reason=str(headers.get("x-first-death-reason", first.get("reason", ""))),
        died_at=_utc(first.get("time")),
    )


def _set_aside_origin(headers: Mapping[str, Any]) -> Origin | None:
    queue = headers.get(DEATH_QUEUE)
    if not isinstance(queue, str | bytes):
        return None
    return Origin(
        exchange=str(headers.get(DEATH_EXCHANGE, "")),
        routing_key=str(headers.get(DEATH_ROUTING_KEY, "")),
        queue=str(queue),
        reason=str(headers.get(DEATH_REASON, "rejected")),
        died_at=_utc(headers.get(DEATH_TIME)),
    )


Row = tuple[str, str, str, str]  # origin queue, routing key, reason, detail
DETAIL_CHARS = 120


def _row(origin: Origin | None, delivery: Delivery, dry_run: bool) -> Row:
    """The report row of a message: where it died, why, and what consume found wrong with it."""
    if origin is None:
        return ("", "", "", "")
    return (origin.queue, origin.routing_key, origin.reason, _detail(origin, delivery, dry_run))


def _detail(origin: Origin, delivery: Delivery, dry_run: bool) -> str:
    """Why consume set a message aside: the error it recorded, else (dry run) the one its body gives now.

    A message consume set aside itself carries the error (``x-logctl-death-error``). One
    the broker dead-lettered on consume's reject carries only ``rejected``; in a dry run,
    decoding its body again (the same decoder, so the same verdict) says how it was
    undecodable. A real replay does not decode what it moves: that would cost a batch's
    decode per message on the path that puts them back.
    """
    recorded = delivery.headers.get(DEATH_ERROR)
    if isinstance(recorded, bytes):
        recorded = recorded.decode("utf-8", "replace")
    if isinstance(recorded, str) and recorded:
        return recorded[:DETAIL_CHARS]
    if origin.reason != "rejected" or not dry_run:
        return ""
    try:
        decode_rows(delivery.body, delivery.content_type, delivery.message_id, origin.routing_key)
    except BadInput as exc:
        return str(exc)[:DETAIL_CHARS]
    return ""


def _destination(origin: Origin | None, options: ReplayOptions) -> tuple[str, str]:
    """Return (exchange, routing key) to publish to.

    ``--to-queue``, else a re-route by ``--to-exchange``/``--to-routing-key`` (what is not
    given comes from the origin), else the origin queue through the default exchange.
    """
    if options.to_queue is not None:
        return "", options.to_queue
    if options.to_exchange is None and options.to_routing_key is None:
        return "", origin.queue if origin else ""
    exchange = options.to_exchange if options.to_exchange is not None else (origin.exchange if origin else "")
    key = options.to_routing_key if options.to_routing_key is not None else (origin.routing_key if origin else "")
    return exchange, key


@dataclass(frozen=True, slots=True)
class _Moving:
    """A message on its way: its tag in the dead-letter queue and its report row."""

    delivery_tag: int
    row: Row


class _Replayer:
    def __init__(
        self,
        broker: Broker,
        publish_broker: Broker | None,
        options: ReplayOptions,
        confirmed_before: Counter[Row] | None = None,
    ) -> None:
        self.options = options
        self.report = ReplayReport()
        # moves confirmed on an earlier connection: what a pass after a failover starts from
        self.confirmed_rows: Counter[Row] = Counter(confirmed_before or {})
        for row, n in self.confirmed_rows.items():
            self.report.outcomes[Outcome.MOVED] += n
            self.report.rows[(*row, Outcome.MOVED)] += n
        self.puller = QueuePuller(broker, options.queue)
        self.publisher = (
            Publisher(
                publish_broker,
                "",
                self._confirmed,
                max_in_flight=64,
                reconnect=False,
                mandatory=True,
                on_return=self._returned,
            )
            if publish_broker is not None
            else None
        )
        self._checked: dict[str, bool] = {}
        self._broker = broker

    def _confirmed(self, token: object) -> None:
        assert isinstance(token, _Moving)
        self.puller.ack(token.delivery_tag)
        self.confirmed_rows[token.row] += 1

    def _returned(self, out: Outgoing) -> None:
        """Unroutable: not acked, so it stays in the dead-letter queue; counted apart from the moved."""
        token = out.token
        assert isinstance(token, _Moving)
        report = self.report
        report.outcomes.subtract({Outcome.MOVED: 1, Outcome.UNROUTABLE: -1})
        report.rows.subtract({(*token.row, Outcome.MOVED): 1, (*token.row, Outcome.UNROUTABLE): -1})
        report.rows = +report.rows  # drop the rows counted down to nothing
        report.outcomes = +report.outcomes

    def classify(self, delivery: Delivery) -> tuple[Outcome, Origin | None]:
        origin = origin_of(delivery.headers)
        if int(delivery.headers.get(REPLAYS_HEADER, 0)) >= self.options.max_replays:
            return Outcome.TOO_MANY, origin
        if origin is None:
            return (Outcome.MOVED if self.options.has_override else Outcome.NO_DEATH), None
        return (Outcome.MOVED if self.options.filter.matches(origin) else Outcome.FILTERED), origin

    def move(self, delivery: Delivery, origin: Origin | None, row: Row) -> None:
        exchange, key = _destination(origin, self.options)
        if exchange not in self._checked:
            self._checked[exchange] = exchange_exists(self._broker, exchange)
        if not self._checked[exchange]:
            raise NotFound(f"exchange {exchange!r} no longer exists: send the messages elsewhere with --to-exchange")
        headers = {REPLAYS_HEADER: int(delivery.headers.get(REPLAYS_HEADER, 0)) + 1}
        assert self.publisher is not None
        self.publisher.publish(republished(delivery, exchange, key, headers, _Moving(delivery.delivery_tag, row)))


def replay(
    broker: Broker,
    publish_broker: Broker | None,
    options: ReplayOptions,
    *,
    on_progress: Callable[[int], None] = lambda _n: None,
) -> ReplayReport:
    """Move (or with ``dry_run`` only count) dead-lettered messages back where they came from.

    A lost connection (a cluster node gone) is reconnected through the connection policy
    and the replay goes on from what was confirmed: the broker puts back every message
    not yet acked, so each is seen again; one published whose confirm was lost with the
    connection is published twice (its record ids let sinks drop the copy).
    """
    if not queue_exists(broker, options.queue):
        raise NotFound(f"queue {options.queue!r} does not exist")
    confirmed: Counter[Row] = Counter()
    failed_over = False
    while True:
        replayer = _Replayer(broker, None if options.dry_run else publish_broker, options, confirmed)
        try:
            report = _replay_pass(replayer, options, on_progress)
        except BrokerUnreachable as exc:
            confirmed = replayer.confirmed_rows
            out_of_time = _deadline(RECONNECT_FOR)
            for one in dict.fromkeys(b for b in (broker, publish_broker) if b is not None):
                one.recover(exc, out_of_time)
            broker.notify(f"replaying the rest ({sum(confirmed.values())} moved and confirmed so far)")
            failed_over = True
            continue
        if not failed_over or options.limit is not None or not _returned_late(broker, options.queue, report.left):
            return report
        confirmed = replayer.confirmed_rows
        broker.notify("messages that were unacked on the lost connection came back; replaying them too")


RETURN_GRACE_S = 10.0  # how long after a failover replay waits for unacked messages to come back


def _returned_late(broker: Broker, queue: str, left: int) -> bool:
    """After a failover: whether more messages than the pass left came back into ``queue``.

    Messages a lost connection held unacked return to a quorum queue only once its new
    leader sees that connection's node gone, which can be after the next pass found the
    queue empty; without this wait they would stay behind, moved but not acked.
    """
    give_up_at = time.monotonic() + RETURN_GRACE_S
    while time.monotonic() < give_up_at:
        if queue_depth(broker, queue) > left:
            return True
        time.sleep(0.5)
    return False


def _deadline(seconds: float) -> Callable[[], bool]:
    give_up_at = time.monotonic() + seconds
    return lambda: time.monotonic() > give_up_at


def _replay_pass(replayer: _Replayer, options: ReplayOptions, on_progress: Callable[[int], None]) -> ReplayReport:
    report = replayer.report
    seen = report.moved
    try:
        while options.limit is None or report.moved < options.limit:
            delivery = replayer.puller.get()
            if delivery is None:
                break
            seen += 1
            outcome, origin = replayer.classify(delivery)
            row = _row(origin, delivery, options.dry_run)
            if outcome is Outcome.MOVED and not options.dry_run:
                replayer.move(delivery, origin, row)
            report.outcomes[outcome] += 1
            report.rows[(*row, outcome)] += 1
            on_progress(seen)
        if replayer.publisher is not None:
            replayer.publisher.wait_confirmed()
    finally:
        with contextlib.suppress(BrokerUnreachable):  # on a lost connection the broker puts them back itself
            replayer.puller.close()  # the unacked (left, or unconfirmed) go back in order
    return report


def service_filter(names: list[str]) -> frozenset[str]:
    """Services as they appear in routing keys."""
    return frozenset(routing_word(n) for n in names)
