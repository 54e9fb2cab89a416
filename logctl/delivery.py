"""Delivery: encoded records -> batches per routing key -> an output -> confirms -> receipts.

The one batcher every producer uses (ship's files and stdin; later the HTTP intake and
the logging handler). ``Batcher`` is single-threaded and cheap per row: a batch per
routing key, sent when it holds ``batch_size`` records or MAX_BATCH_BYTES, or once it is
``linger_s`` old; the output (the broker's Publisher, or the dry run's screen) bounds
what is in flight. When the output confirms a batch, every waiter that has records in
it is told (``Waiter.advance``): ship's per-source checkpoint progress, or a
``Receipt``, which completes once all the batches holding one group of records are
confirmed. ``DeliveryThread`` is a thread-safe front for callers that cannot poll.
"""

from __future__ import annotations

import bisect
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Protocol

from logctl import metrics
from logctl.codec import RowPacker
from logctl.records import ROW_LEVEL, ROW_SERVICE, WireRow, routing_key
from logctl.transport import Outgoing

# A batch is sent once it holds this many bytes, whatever its record count: RabbitMQ refuses
# messages over its max_message_size (128 MiB by default), and 1,000 lines of 1 MiB would
# make one batch of a gigabyte that no retry could ever publish.
MAX_BATCH_BYTES = 4 << 20
EAGER_IN_FLIGHT = 2  # an eager DeliveryThread sends at once while fewer batches than this await confirms
CONFIRM_POLL_S = 0.002  # DeliveryThread: how long it waits for confirms before looking at its inbox


class Output(Protocol):
    """Where batches go: the broker (Publisher) or, for --dry-run, the screen."""

    @property
    def in_flight(self) -> int: ...

    def publish(self, out: Outgoing) -> None: ...

    def poll(self) -> None: ...

    def end_round(self) -> None:
        """Called once a round sent every batch due (``poll`` may come mid-round)."""

    def wait_confirmed(self, timeout: float | None = None) -> bool: ...


class Waiter(Protocol):
    """Something with records in batches, told when one of them is confirmed."""

    def advance(self) -> None: ...


class Batch:
    """Records of one routing key (as encoded rows) on their way; ``confirmed`` once the broker said so."""

    __slots__ = ("bytes", "confirmed", "count", "created", "key", "rows", "sent", "sources", "waiters")

    def __init__(self, key: str, created: float) -> None:
        self.key = key
        # Encoded rows; an item may hold several back to back (a view of a parse worker's result).
        self.rows: list[bytes | memoryview] = []
        self.count = 0  # rows in ``rows``
        self.bytes = 0  # their encoded size
        self.waiters: list[Waiter] = []
        self.sources: dict[str, str] = {}  # id prefix -> path of the files among the rows
        self.created = created
        self.sent = 0.0  # when it was published (monotonic)
        self.confirmed = False

    def full(self, size: int) -> bool:
        """Whether the batch is due: ``size`` records, or MAX_BATCH_BYTES of them."""
        return self.count >= size or self.bytes >= MAX_BATCH_BYTES

    def add_waiter(self, waiter: Waiter) -> None:
        """Tell ``waiter`` when this batch is confirmed (noted once in a row: callers add runs of rows)."""
        if not self.waiters or self.waiters[-1] is not waiter:
            self.waiters.append(waiter)


class Receipt:
    """A group of records spread over several batches: confirmed once all of them are.

    ``on_done`` runs once, at the confirm that completes the group. A receipt still
    being filled (``sealed=False``) completes only after ``seal()``: an output may
    confirm the first batch before the group's last row is batched.
    """

    __slots__ = ("_done", "batches", "on_done", "sealed")

    def __init__(
        self, batches: Sequence[Batch] = (), on_done: Callable[[], None] | None = None, *, sealed: bool = True
    ) -> None:
        self.batches = list(batches)
        self.on_done = on_done
        self.sealed = sealed
        self._done = False

    @property
    def confirmed(self) -> bool:
        return self.sealed and all(b.confirmed for b in self.batches)

    def seal(self) -> None:
        """No more batches will be added: complete now if all are confirmed already."""
        self.sealed = True
        self.advance()

    def advance(self) -> None:
        if not self._done and self.on_done is not None and self.confirmed:
            self._done = True
            self.on_done()


class Batcher:
    """Per-key batches of encoded rows, sent to an output; confirms handed on to waiters.

    ``make_output`` receives the confirm callback (a batch comes back as the token).
    """

    def __init__(
        self,
        make_output: Callable[[Callable[[object], None]], Output],
        packer: RowPacker,
        *,
        batch_size: int,
        linger_s: float,
        component: str = "ship",
    ) -> None:
        """``component`` names the producer in the metrics (ship, intake, handler)."""
        self.output = make_output(self._on_confirm)
        self.component = component
        self.packer = packer
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.open: dict[str, Batch] = {}  # batches still filling, by routing key
        self.records_sent = 0
        self.batches_sent = 0

    def batch_for(self, key: str) -> Batch:
        """The open batch of ``key`` (a new one if none)."""
        batch = self.open.get(key)
        if batch is None:
            batch = self.open[key] = Batch(key, time.monotonic())
        return batch

    def fill(
        self, keys: Sequence[str], packed: Iterable[bytes], waiter: Waiter, source: tuple[str, str] | None = None
    ) -> list[Batch]:
        """Put each encoded row into the open batch of its routing key; return the batch each row went to.

        Batches are sent as they fill; ``waiter`` hears of each one's confirm. ``source``:
        the (id prefix, path) of the file the rows come from, which their batches carry.
        """
        went = []
        take = self._take
        for key, row in zip(keys, packed, strict=True):
            batch = self.open.get(key) or self.batch_for(key)
            take(batch, row, 1, len(row), waiter, source)
            went.append(batch)
        return went

    def add_rows(
        self, rows: Mapping[str, tuple[bytes, Sequence[int]]], waiter: Waiter, source: tuple[str, str] | None = None
    ) -> list[Batch]:
        """Batch runs of encoded rows per key (a parse worker's ``data`` and row ``ends``); return the batches touched.

        A batch takes rows up to its record count, or through the row that fills its bytes.
        """
        size = self.batch_size
        touched: list[Batch] = []
        for key, (data, ends) in rows.items():
            buf = memoryview(data)  # slices of it are views, not copies: the body's join copies once
            taken = 0
            while taken < len(ends):
                batch = self.batch_for(key)
                start = ends[taken - 1] if taken else 0
                filled = bisect.bisect_left(ends, start + MAX_BATCH_BYTES - batch.bytes, taken) + 1
                upto = min(len(ends), taken + size - batch.count, filled)
                touched.append(batch)
                self._take(batch, buf[start : ends[upto - 1]], upto - taken, ends[upto - 1] - start, waiter, source)
                taken = upto
        return touched

    def _take(
        self,
        batch: Batch,
        rows: bytes | memoryview,
        count: int,
        nbytes: int,
        waiter: Waiter,
        source: tuple[str, str] | None,
    ) -> None:
        """The one step of filling a batch: add rows, note who waits and which file, send it once full."""
        if source is not None and source[0] not in batch.sources:
            batch.sources[source[0]] = source[1]
        batch.rows.append(rows)
        batch.count += count
        batch.bytes += nbytes
        waiters = batch.waiters
        if not waiters or waiters[-1] is not waiter:
            waiters.append(waiter)
        if batch.count >= self.batch_size or batch.bytes >= MAX_BATCH_BYTES:
            self.send(batch)

    def send(self, batch: Batch) -> None:
        """Encode and publish one batch (it leaves the open ones)."""
        del self.open[batch.key]
        packer = self.packer
        count = batch.count
        body = packer.envelope(batch.rows, count, batch.sources)
        self.records_sent += count
        self.batches_sent += 1
        batch.sent = time.monotonic()
        metrics.METRICS.published(self.component, count)
        self.output.publish(
            Outgoing(body, batch.key, packer.content_type, token=batch, headers={"x-logctl-count": count})
        )
        batch.rows = []  # the body is what travels now; free the rows

    def send_lingering(self, now: float) -> None:
        """Send the batches older than ``linger_s``."""
        linger = self.linger_s
        for batch in list(self.open.values()):
            if now - batch.created >= linger:
                self.send(batch)

    def send_all(self) -> None:
        for batch in list(self.open.values()):
            self.send(batch)

    def _on_confirm(self, token: object) -> None:
        assert isinstance(token, Batch)
        token.confirmed = True
        metrics.METRICS.confirmed(self.component, token.count, time.monotonic() - token.sent)
        for waiter in token.waiters:
            waiter.advance()


Done = Callable[[BaseException | None], None]  # told once: None when confirmed, else what stopped delivery


class _Group:
    """The records of one ``submit``: encoded, then a receipt once batched; ``done`` told once."""

    __slots__ = ("done", "rows", "told")

    def __init__(self, rows: list[WireRow], done: Done) -> None:
        self.rows = rows
        self.done = done
        self.told = False

    def finish(self, error: BaseException | None = None) -> None:
        if not self.told:
            self.told = True
            self.done(error)


def _future_done(future: Future[None]) -> Done:
    def done(error: BaseException | None) -> None:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    return done


class DeliveryThread:
    """A thread-safe front: ``submit(rows)`` returns a future done once every row is confirmed.

    One thread owns the Batcher and its output, so records of concurrent callers share
    batches. ``max_pending`` bounds the submits waiting to be batched: past it ``submit``
    raises ``queue.Full`` at once, and the caller decides (answer 503, drop and count...).
    """

    def __init__(
        self,
        make_output: Callable[[Callable[[object], None]], Output],
        packer: RowPacker,
        *,
        batch_size: int,
        linger_s: float,
        max_pending: int = 10_000,
        component: str = "intake",
        eager: bool = False,
    ) -> None:
        """``eager``: send what is batched at once while fewer than ``EAGER_IN_FLIGHT`` batches
        await confirms, and let ``linger_s`` pass only while more do. A caller that waits for
        each confirm (the intake) then waits one confirm when alone, and under load its
        records still share batches: those that come in while the broker confirms the last."""
        self._component = component
        self._eager = eager
        self._make_output = make_output
        self._packer = packer
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._inbox: queue.Queue[_Group | None] = queue.Queue(max_pending)
        self._flush_requests: list[threading.Event] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._error: BaseException | None = None
        self._waiting: set[_Group] = set()  # batched, not yet confirmed
        self._thread = threading.Thread(target=self._run, name="logctl-delivery", daemon=True)
        self._thread.start()

    def submit(self, rows: Iterable[WireRow]) -> Future[None]:
        """Queue rows for delivery; the future completes once the broker confirmed all of them."""
        future: Future[None] = Future()
        self.submit_then(rows, _future_done(future))
        return future

    def submit_then(self, rows: Iterable[WireRow], done: Done) -> None:
        """Queue rows for delivery; ``done(None)`` runs in the delivery thread once all are confirmed
        (``done(error)`` if delivery stopped). No Future is made: the intake wakes its waiters itself."""
        if self._closing.is_set():
            raise RuntimeError("delivery is closed")
        group = _Group(list(rows), done)
        if not group.rows:
            group.finish()
            return
        self._inbox.put_nowait(group)

    def flush(self, timeout: float | None = None) -> bool:
        """Send every batch now and wait (up to ``timeout``) until all are confirmed."""
        done = threading.Event()
        with self._lock:
            self._flush_requests.append(done)
        self._inbox.put(None)  # wakes the thread
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread; False if confirms were still missing at ``timeout``."""
        flushed = self.flush(timeout)
        self._closing.set()
        self._inbox.put(None)
        self._thread.join(timeout)
        return flushed

    @property
    def error(self) -> BaseException | None:
        """What stopped the delivery thread, if anything did."""
        return self._error

    def _run(self) -> None:
        try:
            batcher = Batcher(
                self._make_output,
                self._packer,
                batch_size=self._batch_size,
                linger_s=self._linger_s,
                component=self._component,
            )
            self._loop(batcher)
        except BaseException as exc:  # noqa: BLE001 - handed to the callers' futures and to .error
            self._error = exc
            self._fail_pending(exc)

    def _loop(self, batcher: Batcher) -> None:
        output = batcher.output
        while True:
            group = None
            if output.in_flight:
                # Confirms are due on the wire: wait for those (briefly), not for the inbox.
                output.wait_confirmed(CONFIRM_POLL_S)
                with contextlib.suppress(queue.Empty):
                    group = self._inbox.get_nowait()
            else:
                with contextlib.suppress(queue.Empty):
                    group = self._inbox.get(timeout=min(self._linger_s, 0.05) if batcher.open else 0.2)
            while group is not None:
                self._batch(batcher, group)
                try:
                    group = self._inbox.get_nowait()
                except queue.Empty:
                    group = None
            if self._eager and batcher.open and output.in_flight < EAGER_IN_FLIGHT:
                batcher.send_all()
            else:
                batcher.send_lingering(time.monotonic())
            output.end_round()
            with self._lock:
                requests, self._flush_requests = self._flush_requests, []
            if requests:
                batcher.send_all()
                output.wait_confirmed(None)
                for done in requests:
                    done.set()
            if self._closing.is_set() and self._inbox.empty():
                return

    def _batch(self, batcher: Batcher, group: _Group) -> None:
        rows = group.rows
        self._waiting.add(group)

        def done() -> None:
            self._waiting.discard(group)
            group.finish()

        receipt = Receipt(on_done=done, sealed=False)
        keys = [routing_key(row[ROW_SERVICE], row[ROW_LEVEL]) for row in rows]
        receipt.batches = list(dict.fromkeys(batcher.fill(keys, self._packer.pack_parsed(rows), receipt)))
        receipt.seal()

    def _fail_pending(self, exc: BaseException) -> None:
        for waiting in list(self._waiting):
            waiting.finish(exc)
        while True:
            try:
                group = self._inbox.get_nowait()
            except queue.Empty:
                break
            if group is not None:
                group.finish(exc)
        with self._lock:
            for done in self._flush_requests:
                done.set()
