"""A token bucket: ship reads, and consume stores, at most so many records a second.

It smooths rather than drops: ``delay(n)`` takes ``n`` tokens (the balance may go below
zero) and says how long the caller should wait so that the average stays at ``rate``.
``burst`` is how far ahead of the rate a caller may get after being idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(self, rate: float, *, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 10)  # a tenth of a second ahead
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    def delay(self, count: int) -> float:
        """Take ``count`` tokens; return the seconds to wait before going on (0 if none)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - count
        self._last = now
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
