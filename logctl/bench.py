"""Load generation and measurement, in the manner of rabbitmq-perf-test, for logctl's paths.

- ``publish``: producers publish batches of records as fast as confirms allow (or at a
  rate); consumers (if any) drain at the same time, giving end-to-end latency.
- ``consume``: the queue is filled first, then consumers drain it.
- ``ship``: the real pipeline on synthetic log lines of the common formats: parsing,
  batching, confirmed publishing, and a consumer counting what arrives.

Every run uses queues and exchanges of its own and deletes them at the end.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from logctl.codec import decode, encode
from logctl.config import Settings
from logctl.errors import BrokerUnreachable, PartialFailure
from logctl.records import Level, LogRecord
from logctl.shipper import ShipOptions, Shipper
from logctl.transport import (
    Broker,
    Outgoing,
    Publisher,
    QueueReader,
    Topology,
    declare_plain_queue,
    declare_topology,
    delete_topology,
)


class BenchMode(StrEnum):
    PUBLISH = "publish"
    CONSUME = "consume"
    SHIP = "ship"


@dataclass(frozen=True, slots=True)
class BenchOptions:
    mode: BenchMode
    producers: int = 1
    consumers: int = 1
    size: int = 200  # bytes of message text per record
    batch: int = 100  # records per message
    serializer: str = "msgpack"
    queue_type: str = "quorum"
    duration_s: float | None = 10.0
    messages: int | None = None  # publish/consume: messages; ship: lines
    rate: float | None = None  # messages per second per producer
    confirm: bool = True
    prefetch: int = 200
    max_in_flight: int = 64


@dataclass(frozen=True, slots=True)
class Percentiles:
    """Latency percentiles in milliseconds."""

    p50: float
    p95: float
    p99: float
    max: float

    @staticmethod
    def of(samples: list[float]) -> Percentiles | None:
        if not samples:
            return None
        ordered = sorted(samples)

        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

        return Percentiles(at(0.50), at(0.95), at(0.99), round(ordered[-1] * 1000, 2))


@dataclass(slots=True)
class Counters:
    """Shared between the load threads and the reporter; ints are updated under the GIL."""

    published: int = 0
    confirmed: int = 0
    consumed: int = 0
    records: int = 0
    bytes: int = 0
    confirm_latency: list[float] = field(default_factory=list)
    e2e_latency: list[float] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BenchResult:
    mode: BenchMode
    messages: int
    records: int
    bytes: int
    seconds: float
    confirm_latency: Percentiles | None
    e2e_latency: Percentiles | None

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.seconds

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6


_FORMATS = (
    '{{"time":"{iso}","level":"INFO","msg":"request {i} done {pad}","service":"api","user":"u{u}"}}',
    'time={iso} level=warn msg="slow query {i} {pad}" service=db duration_ms={u}',
    '10.0.{u}.7 - - [{clf} +0000] "GET /item/{i}?q={pad} HTTP/1.1" 200 512 "-" "curl/8"',
    "{py} - worker - ERROR - job {i} failed {pad}",
    "<13>{bsd} host1 cron[42]: tick {i} {pad}",
)
_LINES_PER_SECOND = 10_000  # of log time: every timestamp differs (100 us apart), as in a busy service


def synthetic_lines(count: int, size: int) -> Iterator[str]:
    """Yield ``count`` log lines of the common formats in turn, padded to about ``size`` bytes."""
    start = int(datetime(2026, 11, 27, 11, 32, tzinfo=UTC).timestamp())
    stamps: dict[str, str] = {}
    second = -1
    for i in range(count):
        if i // _LINES_PER_SECOND != second:
            second = i // _LINES_PER_SECOND
            t = datetime.fromtimestamp(start + second, UTC)
            stamps = {
                "iso": t.strftime("%Y-%m-%dT%H:%M:%S"),
                "clf": t.strftime("%d/%b/%Y:%H:%M:%S"),
                "py": t.strftime("%Y-%m-%d %H:%M:%S"),
                "bsd": t.strftime("%b %d %H:%M:%S"),
            }
        frac = i % _LINES_PER_SECOND * 100  # microseconds
        fields = {**stamps, "iso": f"{stamps['iso']}.{frac:06d}Z", "py": f"{stamps['py']},{frac // 1000:03d}"}
        fmt = _FORMATS[i % len(_FORMATS)]
        line = fmt.format(i=i, u=i % 97, pad="", **fields)
        yield fmt.format(i=i, u=i % 97, pad="x" * max(0, size - len(line)), **fields)


def _batch_body(options: BenchOptions) -> tuple[bytes, str]:
    now = datetime.now(UTC)
    records = [LogRecord(f"bench-{i:012x}", now, Level.INFO, "bench", "x" * options.size) for i in range(options.batch)]
    return encode(records, options.serializer)


class _Run:
    """One benchmark: its own topology, load threads, and a stop signal."""

    def __init__(self, settings: Settings, options: BenchOptions, notify: Callable[[str], None]) -> None:
        tag = uuid.uuid4().hex[:8]
        self.notify = notify  # connection notices (a failover mid-run)
        self.settings = replace(settings, exchange=f"bench-{tag}", default_queue="none")
        self.options = options
        self.topology = Topology(self.settings.exchange, f"bench-{tag}.q")
        self.queue = f"bench-{tag}.q"
        self.counters = Counters()
        self.stop = threading.Event()
        self.producers_done = threading.Event()
        self.threads: list[threading.Thread] = []

    def spawn(self, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                self.counters.errors.append(exc)
                self.stop.set()

        thread = threading.Thread(target=guarded, daemon=True)
        thread.start()
        self.threads.append(thread)

    def declare(self, broker: Broker) -> None:
        declare_topology(broker, replace(self.topology, default_queue=None))
        declare_plain_queue(broker, self.queue, self.options.queue_type, self.settings.exchange, "#")

    def produce(self, quota: int | None) -> None:
        counters, options = self.counters, self.options
        body, content_type = _batch_body(options)
        interval = 1 / options.rate if options.rate else 0.0
        with Broker(self.settings, self.notify) as broker:

            def confirmed(token: object) -> None:
                counters.confirmed += 1
                assert isinstance(token, float)
                counters.confirm_latency.append(time.monotonic() - token)

            # a lost connection (a cluster node gone) fails over and publishes the unconfirmed again
            publisher = Publisher(
                broker, "", confirmed, options.max_in_flight, should_stop=self.stop.is_set, confirm=options.confirm
            )
            sent = 0
            next_at = time.monotonic()
            while not self.stop.is_set() and (quota is None or sent < quota):
                if interval:
                    next_at += interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                headers = {"x-logctl-count": options.batch, "x-bench-ts": time.time()}
                publisher.publish(Outgoing(body, self.queue, content_type, time.monotonic(), headers, exchange=""))
                sent += 1
                counters.published += 1
                counters.bytes += len(body)
            publisher.wait_confirmed(60)

    def consume(self, expected: Callable[[], int | None], measure_e2e: bool) -> None:
        counters = self.counters
        with Broker(self.settings, self.notify) as broker:
            reader = QueueReader(broker, self.queue, self.options.prefetch)
            while not self.stop.is_set():
                target = expected()
                if target is not None and counters.consumed >= target:
                    break
                try:
                    batch = reader.fetch(self.options.prefetch, 0.2)
                except BrokerUnreachable as exc:  # fail over; the unacked come again (counted twice)
                    broker.recover(exc, self.stop.is_set)
                    reader = QueueReader(broker, self.queue, self.options.prefetch)
                    continue
                if not batch:
                    continue
                now = time.time()
                for d in batch:
                    counters.records += len(decode(d.body, d.content_type, d.message_id))
                    if measure_e2e and "x-bench-ts" in d.headers:
                        counters.e2e_latency.append(now - float(d.headers["x-bench-ts"]))
                counters.consumed += len(batch)
                if self.options.mode is BenchMode.CONSUME:
                    counters.bytes += sum(len(d.body) for d in batch)
                with contextlib.suppress(BrokerUnreachable):  # lost: redelivered on the next connection
                    reader.ack(batch[-1].delivery_tag, multiple=True)
            reader.close()


def run_bench(
    settings: Settings,
    options: BenchOptions,
    on_tick: Callable[[Counters, float], None],
    notify: Callable[[str], None] = lambda _message: None,
) -> BenchResult:
    """Run one benchmark and return its figures; the queues it made are deleted."""
    run = _Run(settings, options, notify)
    # One connection to declare, another to delete: one held idle through the run would
    # miss its heartbeats (nothing drains it) and be closed by the broker.
    with Broker(run.settings) as admin:
        run.declare(admin)
    try:
        if options.mode is BenchMode.SHIP:
            return _ship(run, on_tick)
        return _publish_or_consume(run, on_tick)
    finally:
        run.stop.set()
        for thread in run.threads:
            thread.join(timeout=10)
        _delete(run)


def _delete(run: _Run, attempts: int = 3) -> None:
    """Delete the run's queues, on a fresh connection each try: deleting a quorum queue while
    one of its nodes is down can outlast the heartbeat, and the broker drops the connection."""
    for attempt in range(attempts):
        try:
            with Broker(run.settings) as admin:
                delete_topology(admin, run.topology, [run.queue])
            return
        except BrokerUnreachable:
            if attempt == attempts - 1:
                raise


def _wait(run: _Run, until: Callable[[], bool], on_tick: Callable[[Counters, float], None], started: float) -> None:
    deadline = started + run.options.duration_s if run.options.duration_s and not run.options.messages else None
    while not run.stop.is_set() and not until():
        if deadline is not None and time.monotonic() >= deadline:
            break
        time.sleep(0.25)
        on_tick(run.counters, time.monotonic() - started)
    if run.counters.errors:
        raise run.counters.errors[0]


def _publish_or_consume(run: _Run, on_tick: Callable[[Counters, float], None]) -> BenchResult:
    options, counters = run.options, run.counters
    quota = None
    if options.messages:
        quota = max(1, options.messages // options.producers)
    if options.mode is BenchMode.CONSUME:
        fill = quota or 10_000 // options.producers
        for _ in range(options.producers):
            run.spawn(lambda: run.produce(fill))
        _wait(run, lambda: counters.confirmed >= fill * options.producers, lambda _c, _s: None, time.monotonic())
        total = fill * options.producers
        counters.published = counters.bytes = 0
        started = time.monotonic()
        for _ in range(options.consumers):
            run.spawn(lambda: run.consume(lambda: total, measure_e2e=False))
        _wait(run, lambda: counters.consumed >= total, on_tick, started)
        return _result(run, started, counters.consumed, with_confirms=False)
    started = time.monotonic()
    for _ in range(options.producers):
        run.spawn(lambda: run.produce(quota))
    for _ in range(options.consumers):
        run.spawn(lambda: run.consume(lambda: counters.published if run.producers_done.is_set() else None, True))
    target = None if quota is None else quota * options.producers
    _wait(run, lambda: target is not None and counters.confirmed >= target, on_tick, started)
    seconds = time.monotonic() - started
    run.producers_done.set()
    if options.consumers:  # let consumers drain what was published, for end-to-end latency
        drain_until = time.monotonic() + 30
        while counters.consumed < counters.published and time.monotonic() < drain_until and not counters.errors:
            time.sleep(0.1)
    run.stop.set()
    return _result(run, started, counters.confirmed, with_confirms=options.confirm, seconds=seconds)


def _result(run: _Run, started: float, messages: int, with_confirms: bool, seconds: float | None = None) -> BenchResult:
    c, options = run.counters, run.options
    records = c.records if options.mode is BenchMode.CONSUME else messages * options.batch
    return BenchResult(
        mode=options.mode,
        messages=messages,
        records=records,
        bytes=c.bytes,
        seconds=max(seconds if seconds is not None else time.monotonic() - started, 1e-9),
        confirm_latency=Percentiles.of(c.confirm_latency) if with_confirms else None,
        e2e_latency=Percentiles.of(c.e2e_latency),
    )


class _TimedOutput:
    """The real Publisher, timing each batch from publish to confirm."""

    def __init__(
        self, broker: Broker, settings: Settings, confirm: Callable[[object], None], counters: Counters
    ) -> None:
        self._confirm = confirm
        self._counters = counters
        self._sent: dict[int, float] = {}
        self._publisher = Publisher(broker, settings.exchange, self._confirmed, settings.max_in_flight, reconnect=False)

    @property
    def in_flight(self) -> int:
        return self._publisher.in_flight

    def publish(self, out: Outgoing) -> None:
        self._sent[id(out.token)] = time.monotonic()
        self._counters.published += 1
        self._counters.bytes += len(out.body)
        self._publisher.publish(out)

    def poll(self) -> None:
        self._publisher.poll()

    def end_round(self) -> None:
        self._publisher.end_round()

    def wait_confirmed(self, timeout: float | None = None) -> bool:
        return self._publisher.wait_confirmed(timeout)

    def _confirmed(self, token: object) -> None:
        self._counters.confirmed += 1
        self._counters.confirm_latency.append(time.monotonic() - self._sent.pop(id(token), time.monotonic()))
        self._confirm(token)


def _ship(run: _Run, on_tick: Callable[[Counters, float], None]) -> BenchResult:
    """Ship a synthetic file through the real Shipper while a consumer counts arrivals."""
    options, counters = run.options, run.counters
    lines = options.messages or 200_000
    with tempfile.TemporaryDirectory(prefix="logctl-bench-") as tmp:
        path = Path(tmp) / "bench.log"
        with path.open("w") as fh:
            fh.writelines(line + "\n" for line in synthetic_lines(lines, options.size))
        run.spawn(lambda: run.consume(lambda: None, measure_e2e=False))
        ship_options = ShipOptions(
            paths=(str(path),),
            follow=False,
            batch_size=options.batch,
            serializer=options.serializer,
            workers=run.settings.workers,  # as ship would: parse workers for a file this far behind
        )
        settings = replace(run.settings, max_in_flight=options.max_in_flight)
        started = time.monotonic()
        with Broker(settings) as broker:
            shipper = Shipper(
                ship_options, lambda confirm: _TimedOutput(broker, settings, confirm, counters), None, lambda _m: None
            )
            stats = shipper.run(run.stop.is_set)
        seconds = time.monotonic() - started
        deadline = time.monotonic() + 60
        while counters.records < stats.records and time.monotonic() < deadline and not counters.errors:
            on_tick(counters, time.monotonic() - started)
            time.sleep(0.1)
        run.stop.set()
    if counters.errors:
        raise counters.errors[0]
    if counters.records < stats.records:
        raise PartialFailure(f"only {counters.records} of {stats.records} shipped records arrived within 60 s")
    return BenchResult(
        mode=BenchMode.SHIP,
        messages=counters.confirmed,
        records=stats.records,
        bytes=counters.bytes,
        seconds=max(seconds, 1e-9),
        confirm_latency=Percentiles.of(counters.confirm_latency),
        e2e_latency=None,
    )
