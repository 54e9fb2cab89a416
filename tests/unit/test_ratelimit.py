"""The token bucket on a fake clock: no timing, only arithmetic."""

from __future__ import annotations

import pytest

from logctl.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_the_rest_waits_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(1000, clock=clock)  # burst: a tenth of a second's worth
    assert bucket.delay(100) == 0.0
    assert bucket.delay(500) == pytest.approx(0.5)
    clock.now += 0.5  # the caller waited as told
    assert bucket.delay(1000) == pytest.approx(1.0)


def test_the_average_stays_at_the_rate_whatever_the_sizes() -> None:
    clock = Clock()
    bucket = TokenBucket(250, clock=clock)
    sizes = [1, 700, 3, 40, 2048, 1, 1, 99] * 10
    for size in sizes:
        clock.now += bucket.delay(size)
    assert sum(sizes) / (clock.now - 100.0) == pytest.approx(250, rel=0.02)


def test_idle_time_saves_up_no_more_than_the_burst() -> None:
    clock = Clock()
    bucket = TokenBucket(100, burst=20, clock=clock)
    clock.now += 3600
    assert bucket.delay(20) == 0.0
    assert bucket.delay(10) == pytest.approx(0.1)


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)
