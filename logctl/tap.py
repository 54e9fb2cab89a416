"""Records per second as they are published, for ``top``: a tap on the main exchange.

The management API counts messages; a logctl message is a batch of up to thousands of
records. Like rabtap, the tap binds a temporary queue of its own (exclusive, bounded,
oldest dropped) with ``#`` and reads only each message's ``x-logctl-count`` header
(1 for another publisher's message), per routing key. A queue's records/s are those of
the routing keys its binding patterns match. The tap costs the broker one more copy of
each message while ``top`` runs, and is gone when it stops.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from collections.abc import Iterable

from logctl.config import Settings
from logctl.errors import LogctlError
from logctl.transport import Broker, Delivery, QueueReader, declare_tail_queue, translated

TAP_MESSAGES = 10_000  # what the tap queue holds before dropping the oldest (the counts then run low)


@functools.lru_cache(maxsize=4096)  # few patterns, few keys, asked every refresh
def topic_matches(pattern: str, key: str) -> bool:
    """Whether a topic routing ``pattern`` (``*`` one word, ``#`` zero or more) matches ``key``."""
    return _match(tuple(pattern.split(".")), tuple(key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _match(rest, words[1:])


class RecordTap:
    """Count the records published to the exchange, per routing key, until closed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.error: LogctlError | None = None  # why there are no counts (no permission, no broker)
        self._counts: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # every record counted, per routing key, since the start
        self._lock = threading.Lock()
        self._since = time.monotonic()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="logctl-tap", daemon=True)

    def __enter__(self) -> RecordTap:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the tap queue is bound (records published before are not counted)."""
        return self._ready.wait(timeout)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def rates(self) -> dict[str, float]:
        """Records a second per routing key since the last call (or the start)."""
        now = time.monotonic()
        with self._lock:
            counts, self._counts = self._counts, Counter()
            elapsed, self._since = max(now - self._since, 1e-6), now
        return {key: n / elapsed for key, n in counts.items()}

    def _run(self) -> None:
        try:
            with Broker(self.settings) as broker:
                channel = broker.channel()
                name = declare_tail_queue(broker, channel, self.settings.exchange, ["#"], TAP_MESSAGES)
                reader = QueueReader(broker, name, 0, auto_ack=True, channel=channel)
                self._ready.set()
                with translated(broker.url):
                    while not self._stop.is_set():
                        self._count(reader.fetch(1000, 0.2))
        except LogctlError as exc:
            self.error = exc
            self._ready.set()

    def _count(self, deliveries: Iterable[Delivery]) -> None:
        batch: Counter[str] = Counter()
        for d in deliveries:
            batch[d.routing_key] += int(d.headers.get("x-logctl-count", 1))
        with self._lock:
            self._counts.update(batch)
            self.totals.update(batch)


def records_per_s(rates: dict[str, float], patterns: Iterable[str]) -> float:
    """The records a second of the routing keys that any of ``patterns`` match."""
    patterns = list(patterns)
    return sum(rate for key, rate in rates.items() if any(topic_matches(p, key) for p in patterns))
