"""tail: a live view of records through a temporary queue bound by routing pattern.

A slow terminal never backs up the broker: a reader thread takes deliveries as fast as
they come into a bounded buffer (what does not fit is dropped and counted), and the
broker-side queue is bounded too, its overflow dead-lettered into a counter queue so
those drops are counted as well. A lost connection (a broker restarted, a cluster node
gone) is reconnected through the connection policy, to another broker of a failover URL,
and the temporary queue declared anew: records published in between are not shown.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from logctl.codec import decode_rows
from logctl.config import Settings
from logctl.errors import BadInput, BrokerUnreachable, PermissionDenied
from logctl.records import ROW_ID, Level, WireRow, routing_word
from logctl.transport import (
    Broker,
    QueueReader,
    declare_counter_queue,
    declare_tail_queue,
    declare_topology,
    topology_of,
    translated,
)


def tail_patterns(level: Level | None, services: Sequence[str], patterns: Sequence[str]) -> list[str]:
    """Return the routing patterns for a minimum level and services, plus raw patterns."""
    if patterns and level is None and not services:
        return list(patterns)
    words = [routing_word(s) for s in services] or ["*"]
    levels = [lvl.value.lower() for lvl in level.at_least()] if level is not None else ["*"]
    return [f"{w}.{lv}" for w in words for lv in levels] + list(patterns)


class InSourceOrder:
    """Hold records a short window and release them in their source's order.

    ship batches per routing key, so a file's INFO and ERROR lines travel in different
    batches, and a full batch leaves before a partial one that waits out the linger. A
    record id is its source's prefix and its zero-padded byte offset, so ids sort in the
    order the source wrote them. A source's held records are released up to the last one
    that has waited ``window`` (with any of lower offset that came later), sources in
    the order of their first record's time.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._held: dict[str, list[tuple[str, float, WireRow]]] = {}

    def add(self, rows: Sequence[WireRow], now: float) -> None:
        for row in rows:
            rid = str(row[ROW_ID])
            self._held.setdefault(rid.rpartition("-")[0], []).append((rid, now, row))

    @property
    def held(self) -> int:
        return sum(len(held) for held in self._held.values())

    def ripe(self, now: float) -> list[WireRow]:
        """The records to show now, in order."""
        return self._release(now - self.window_s)

    def rest(self) -> list[WireRow]:
        """Everything still held, in order (at exit)."""
        return self._release(float("inf"))

    def _release(self, arrived_by: float) -> list[WireRow]:
        out: list[tuple[int, list[WireRow]]] = []
        for source, held in list(self._held.items()):
            held.sort(key=lambda h: h[0])
            last = max((i for i, (_rid, at, _row) in enumerate(held) if at <= arrived_by), default=-1)
            if last < 0:
                continue
            out.append((int(held[0][2][1]), [row for _rid, _at, row in held[: last + 1]]))
            rest = held[last + 1 :]
            if rest:
                self._held[source] = rest
            else:
                del self._held[source]
        out.sort(key=lambda group: group[0])
        return [row for _first, rows in out for row in rows]


@dataclass(frozen=True, slots=True)
class TailOptions:
    patterns: tuple[str, ...]
    buffer_messages: int = 1000  # decoded messages held for the renderer
    queue_messages: int = 1000  # messages the broker holds for us before dropping the oldest


class Tail:
    """Read records matching patterns until closed. Use as a context manager."""

    def __init__(
        self, settings: Settings, options: TailOptions, notify: Callable[[str], None] = lambda _message: None
    ) -> None:
        self.settings = settings
        self.options = options
        self.notify = notify
        self.dropped_here = 0
        self.dropped_by_broker = 0
        self.undecodable = 0
        self._batches: queue.Queue[list[WireRow]] = queue.Queue(maxsize=options.buffer_messages)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="logctl-tail", daemon=True)

    @property
    def dropped(self) -> int:
        return self.dropped_here + self.dropped_by_broker

    def __enter__(self) -> Tail:
        self._thread.start()
        while not self._ready.wait(0.1):
            if not self._thread.is_alive():
                break
        self._raise_error()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def batches(self, timeout: float = 0.2) -> Iterator[list[WireRow]]:
        """Yield batches of records (wire rows) as they arrive (an empty list after ``timeout`` of quiet)."""
        while True:
            self._raise_error()
            try:
                yield self._batches.get(timeout=timeout)
            except queue.Empty:
                yield []

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        try:
            with Broker(self.settings, self.notify) as broker:
                declare_topology(broker, topology_of(self.settings))
                while not self._stop.is_set():
                    try:
                        self._session(broker)
                    except BrokerUnreachable as exc:
                        if not self._ready.is_set():
                            raise  # not even started: the command reports it
                        if self._stop.is_set():
                            return
                        broker.recover(exc, self._stop.is_set)
                        self.notify("reconnected; tailing again (records published meanwhile are not shown)")
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which reports it
            self._error = exc
            self._ready.set()

    def _session(self, broker: Broker) -> None:
        """Declare the temporary queues on this connection and read them until stopped or it is lost."""
        channel = broker.channel()
        try:
            counter = declare_counter_queue(broker, channel, 100_000)
            name = declare_tail_queue(
                broker,
                channel,
                self.settings.exchange,
                self.options.patterns,
                self.options.queue_messages,
                overflow_to=counter,
            )
        except PermissionDenied as exc:
            raise PermissionDenied(
                "tail reads through a temporary queue of its own (server-named, amq.gen-...), which needs "
                f"configure permission on amq.gen-.* and write on it; {exc}"
            ) from exc
        reader = QueueReader(broker, name, 0, auto_ack=True, channel=channel)
        overflow = QueueReader(broker, counter, 0, auto_ack=True, channel=channel)
        self._ready.set()
        with translated(broker.url):
            self._pump(reader, overflow)

    def _pump(self, reader: QueueReader, overflow: QueueReader) -> None:
        while not self._stop.is_set():
            for delivery in reader.fetch(100, 0.2):
                try:
                    d = delivery
                    records = decode_rows(d.body, d.content_type, d.message_id, d.routing_key)
                except BadInput:
                    self.undecodable += 1
                    continue
                try:
                    self._batches.put_nowait(records)
                except queue.Full:
                    self.dropped_here += len(records)
            for lost in overflow.fetch(10_000, 0):
                self.dropped_by_broker += int(lost.headers.get("x-logctl-count", 1))
