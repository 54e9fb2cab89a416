"""Draining a queue into a sink: at-least-once on the wire, exactly-once in the sink.

A batch is acknowledged only after the sink committed it; the sink keys on record ids,
so a redelivery after a crash adds no row. A message that cannot be decoded is set
aside in a dead-letter queue (see deadletter), never simply dropped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from logctl import metrics
from logctl.codec import decode_rows
from logctl.deadletter import DeadLetterer, queue_dead_letters
from logctl.dedupe import SharedIds
from logctl.errors import BadInput, BrokerUnreachable
from logctl.ratelimit import TokenBucket
from logctl.records import WireRow
from logctl.retention import Retention
from logctl.sinks import Sink
from logctl.transport import (
    Broker,
    Delivery,
    QueueReader,
    Topology,
    declare_topology,
    ensure_consumer_queue,
    translated,
)


@dataclass(slots=True)
class ConsumeStats:
    """What a consume run did."""

    messages: int = 0
    records: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    kept: int = 0  # undecodable and nowhere to set aside: left unacked in the queue
    pruned: int = 0  # records past --retain deleted from the sink
    batches: int = 0
    started: float = field(default_factory=time.monotonic)
    last_settled: float | None = None  # when the last batch was acked

    @property
    def seconds(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    @property
    def records_per_s(self) -> float:
        """Records over the time they took to store: from the start to the last ack.

        Not over ``seconds``: a run that ends by ``--exit-when-idle`` waits out its idle
        time after the last record, and that wait is no part of how fast it stored them.
        """
        end = self.last_settled if self.last_settled is not None else time.monotonic()
        return self.records / max(end - self.started, 1e-9)


@dataclass(frozen=True, slots=True)
class ConsumeOptions:
    """How to consume: which queue, bound how, in which batches, until when."""

    queue: str
    patterns: tuple[str, ...] = ()  # extra bindings; a queue declared anew gets "#" if empty
    batch_size: int = 8192
    linger_s: float = 0.2
    prefetch: int = 100
    exit_when_idle: float | None = None
    queue_type: str = "quorum"
    max_rate: float | None = None  # records a second at most (a token bucket): acks come slower


def _decode_batch(
    deliveries: list[Delivery], reader: QueueReader, stats: ConsumeStats, letterer: DeadLetterer
) -> tuple[list[WireRow], list[int]]:
    """Decode deliveries; set the undecodable ones aside. Returns (records, tags of the decoded)."""
    records: list[WireRow] = []
    good: list[int] = []
    redelivered = 0
    for d in deliveries:
        redelivered += d.redelivered
        try:
            records.extend(decode_rows(d.body, d.content_type, d.message_id, d.routing_key))
        except BadInput as exc:
            metrics.METRICS.error("undecodable", "decode")
            if letterer.set_aside(d, reader, str(exc)):
                stats.dead_lettered += 1
                metrics.METRICS.dead_lettered(1)
            else:
                stats.kept += 1
            continue
        good.append(d.delivery_tag)
    if redelivered:
        metrics.METRICS.redelivered(redelivered)
    metrics.METRICS.received("consume", len(records), sum(len(d.body) for d in deliveries))
    return records, good


def _collect(reader: QueueReader, options: ConsumeOptions, stop: Callable[[], bool]) -> list[Delivery]:
    """Gather deliveries until ``batch_size`` records or ``linger_s`` after the first arrived.

    Deliveries past ``batch_size`` records go back to the reader for the next batch: the
    whole prefetch window may be waiting, and a batch of all of it would hold prefetch
    times the records of a message in memory at once.
    """
    batch: list[Delivery] = []
    records = 0
    deadline = time.monotonic() + (min(options.linger_s, 0.5) if options.linger_s else 0.5)
    while records < options.batch_size and len(batch) < options.prefetch and not stop():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        more = reader.fetch(options.prefetch - len(batch), remaining)
        if not more:
            break
        if not batch:  # the first arrived: wait at most linger_s for more
            deadline = time.monotonic() + options.linger_s
        for taken, delivery in enumerate(more, 1):
            batch.append(delivery)
            records += int(delivery.headers.get("x-logctl-count", 1))
            if records >= options.batch_size:
                reader.give_back(more[taken:])
                break
    return batch


@dataclass(slots=True)
class _Written:
    """A batch handed to the sink writer: acked once its write returns."""

    future: Future[tuple[int, float]] | None  # (stored, seconds); None: nothing in it decoded
    good: list[int]  # delivery tags of the decoded deliveries
    one_by_one: bool  # ack each: a kept delivery must not be acked by a ``multiple`` ack
    messages: int
    records: int


def consume(
    broker: Broker,
    topology: Topology,
    sink: Sink[Any],
    options: ConsumeOptions,
    *,
    stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[ConsumeStats], None] = lambda _s: None,
    dedupe: SharedIds | None = None,
    retention: Retention | None = None,
    on_start: Callable[[], None] = lambda: None,
) -> ConsumeStats:
    """Consume ``options.queue`` into ``sink`` until ``stop()`` or the queue stays idle long enough.

    The sink stores one batch in its own thread while the next is fetched, decoded and
    prepared (see Sink); a batch is acked only once its store returned.
    """
    declare_topology(broker, topology)
    declared = ensure_consumer_queue(broker, topology, options.queue, options.patterns, queue_type=options.queue_type)
    dead_letters, why = queue_dead_letters(broker, topology, options.queue, declared)
    letterer = DeadLetterer(broker, topology, options.queue, dead_letters)
    plan = letterer.plan(why)
    if plan is not None:
        broker.notify(plan)
    on_start()  # the queue is there and dead letters have a place: consuming starts now
    try:
        return _consume(broker, sink, options, stop, on_batch, letterer, dedupe, retention)
    finally:
        letterer.close()


def _timed_store(
    sink: Sink[Any], prepared: Any, rows: list[WireRow], dedupe: SharedIds | None, retention: Retention | None
) -> tuple[int, float]:
    """Store a prepared batch (in the sink thread); return how many rows were new, and the seconds it took.

    With ``dedupe`` the ids are remembered at once after the commit, so that a worker
    killed before its ack leaves the shortest window for a second copy. Records past
    ``--retain`` are pruned after the store (the batch's ack does not wait for that).
    """
    started = time.monotonic()
    stored = sink.store(prepared)
    if dedupe is not None:
        dedupe.remember([str(r[0]) for r in rows])
    seconds = time.monotonic() - started
    if retention is not None:
        retention.run(oldest_stored=min(r[1] for r in rows) if rows else None)
    return stored, seconds


def _pace(broker: Broker, seconds: float, stop: Callable[[], bool]) -> None:
    """Wait for the rate limit, still taking frames (deliveries are buffered, heartbeats answered)."""
    until = time.monotonic() + seconds
    with translated(broker.url):
        while not stop() and (remaining := until - time.monotonic()) > 0:
            broker.drain(min(remaining, 0.5))


def _consume(
    broker: Broker,
    sink: Sink[Any],
    options: ConsumeOptions,
    stop: Callable[[], bool],
    on_batch: Callable[[ConsumeStats], None],
    letterer: DeadLetterer,
    dedupe: SharedIds | None,
    retention: Retention | None,
) -> ConsumeStats:
    stats = ConsumeStats()
    limiter = TokenBucket(options.max_rate) if options.max_rate else None
    if limiter is not None:  # batches of about a tenth of a second, so the pace is smooth
        options = dataclasses.replace(options, batch_size=min(options.batch_size, max(1, int(limiter.rate / 10))))
    reader = QueueReader(broker, options.queue, options.prefetch)
    last_activity = time.monotonic()
    pending: _Written | None = None

    def settle(written: _Written) -> None:
        stored, seconds = written.future.result() if written.future is not None else (0, 0.0)
        if written.one_by_one:
            for tag in written.good:
                reader.ack(tag)
        elif written.good:
            reader.ack(written.good[-1], multiple=True)
        stats.messages += written.messages
        stats.records += written.records
        stats.stored += stored
        stats.duplicates += written.records - stored
        stats.batches += 1
        stats.last_settled = time.monotonic()
        metrics.METRICS.stored(stored, written.records - stored, seconds)
        on_batch(stats)

    with ThreadPoolExecutor(1, thread_name_prefix="logctl-sink") as writer:
        while not stop():
            try:
                batch = _collect(reader, options, stop)
                if batch:
                    records, good = _decode_batch(batch, reader, stats, letterer)
                    if limiter is not None and records:
                        _pace(broker, limiter.delay(len(records)), stop)
                    fresh = dedupe.unseen(records) if dedupe is not None else records
                    future = (
                        writer.submit(_timed_store, sink, sink.prepare(fresh), fresh, dedupe, retention)
                        if fresh
                        else None
                    )
                    written = _Written(future, good, stats.kept > 0, len(batch), len(records))
                    if pending is not None:
                        settle(pending)
                    pending = written
                    last_activity = time.monotonic()
                    continue
                if pending is not None:
                    settle(pending)
                    pending = None
                    last_activity = time.monotonic()  # idle from the last ack on, not from a slow write's start
                if retention is not None and retention.due():
                    writer.submit(retention.run).result()  # an idle queue: old records still go
                if options.exit_when_idle is not None and time.monotonic() - last_activity >= options.exit_when_idle:
                    break
            except BrokerUnreachable as exc:
                # Unacked deliveries go back to the queue; the sink drops the ones it already has.
                if pending is not None and pending.future is not None:
                    pending.future.result()  # let the write finish; its acks died with the channel
                pending = None
                broker.recover(exc, stop)
                reader = QueueReader(broker, options.queue, options.prefetch)  # the channel revived
                broker.notify("reconnected to broker; consuming again")
        if pending is not None:
            settle(pending)
    reader.close()
    stats.pruned = retention.pruned if retention is not None else 0
    return stats
