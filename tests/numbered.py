"""Numbered log lines for the fault tests and the soak: each line carries its number,
so that what reaches a sink can be counted (none lost, none doubled)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path


def numbered(start: int, stop: int) -> str:
    """Return lines ``start`` .. ``stop - 1`` (logfmt; the message is ``line N``)."""
    return "".join(f'seq={i} level=info msg="line {i}"\n' for i in range(start, stop))


_NUMBER = re.compile(r"\d+")


def sequence_numbers(messages: Iterable[str]) -> list[int]:
    """The line numbers in stored messages (``line N``, or any text whose first number is N), sorted."""
    numbers = []
    for message in messages:
        found = _NUMBER.search(message)
        assert found is not None, f"no line number in stored message {message!r}"
        numbers.append(int(found.group()))
    return sorted(numbers)


def assert_exactly_once(numbers: list[int], expected: int | Iterable[int]) -> None:
    """Each expected number stored once: names what was lost, doubled or never written."""
    want = set(range(expected)) if isinstance(expected, int) else set(expected)
    got = set(numbers)
    missing, strange = sorted(want - got), sorted(got - want)
    doubled = len(numbers) - len(got)
    assert not missing, f"{len(missing)} lines lost, first {missing[:5]}"
    assert not strange, f"{len(strange)} lines stored that were never written, first {strange[:5]}"
    assert doubled == 0, f"{doubled} lines stored twice"


class NumberedWriter(threading.Thread):
    """Append numbered lines to a file at ``rate_per_s`` until stopped.

    Rotate or truncate the file while holding ``lock``: the writer reopens it by name when
    it is gone, as loggers do.
    """

    def __init__(self, path: Path, rate_per_s: int = 5000) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.rate = rate_per_s
        self.written = 0
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        started = time.monotonic()
        fh = self.path.open("a")
        try:
            while not self.halt.is_set():
                with self.lock:
                    if not self.path.exists():
                        fh.close()
                        fh = self.path.open("a")
                    fh.write(numbered(self.written, self.written + 100))
                    fh.flush()
                    self.written += 100
                # Keep to the rate whatever the writes cost: sleep until the next burst is due.
                self.halt.wait(max(0.0, started + self.written / self.rate - time.monotonic()))
        finally:
            fh.close()

    def stop(self) -> int:
        """Stop writing; return how many lines were written."""
        self.halt.set()
        self.join()
        return self.written
