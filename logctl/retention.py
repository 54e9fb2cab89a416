"""``consume --retain``: delete records past their age between batches, a little at a time."""

from __future__ import annotations

import time
from collections.abc import Callable

from logctl.records import micros_of, now_utc
from logctl.sinks import PRUNE_CHUNK, PrunableSink

# A retention pass deletes at most this many chunks (of the sink's PRUNE_CHUNK rows)
# before the next batch is stored, so that storing never waits long behind pruning.
CHUNKS_PER_PASS = 4
PASS_EVERY_S = 60.0


class Retention:
    """Prunes a sink to the records of the last ``keep_s`` seconds, called from the sink's thread."""

    def __init__(self, sink: PrunableSink[object], keep_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.keep_s = keep_s
        self.pruned = 0
        self._clock = clock
        self._next = clock()  # the first pass comes with the first batch

    def due(self) -> bool:
        return self._clock() >= self._next

    def cutoff(self) -> int:
        """Records older than this (microseconds since the epoch) are past retention."""
        return micros_of(now_utc()) - int(self.keep_s * 1_000_000)

    def run(self, oldest_stored: int | None = None) -> int:
        """Prune a few chunks when a pass is due; return how many records went.

        A pass is due once a minute, at once while more is waiting, and after a batch that
        stored records already past retention (``oldest_stored``: consume catching up).
        """
        cutoff = self.cutoff()
        if not self.due() and (oldest_stored is None or oldest_stored >= cutoff):
            return 0
        gone = self.sink.prune(cutoff, CHUNKS_PER_PASS)
        self.pruned += gone
        # A full pass means more is waiting: go on after the next batch, not a minute later.
        full = gone >= CHUNKS_PER_PASS * PRUNE_CHUNK
        self._next = self._clock() + (0.0 if full else PASS_EVERY_S)
        return gone
