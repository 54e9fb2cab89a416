"""stdout sink: JSON lines to standard output, for pipes (``logctl consume --sink stdout | jq``).

It drops duplicates among the last ``RECENT_IDS`` records of this run only: what it
printed in an earlier run is out of its sight.
"""

from __future__ import annotations

from logctl.records import WireRow, json_record
from logctl.render import json_lines, write_stdout
from logctl.sinks import unseen

RECENT_IDS = 1_000_000


class StdoutSink:
    """Write records as JSON lines to stdout, flushed per batch."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def describe(self) -> str:
        """Where the records go, for consume's start line."""
        return "standard output (JSON Lines)"

    def prepare(self, rows: list[WireRow]) -> tuple[bytearray, int]:
        """Return the JSON lines of the records not printed in this run yet, and how many they are."""
        new_rows = unseen(rows, self._seen)
        prepared = json_lines(json_record(*r) for r in new_rows), len(new_rows)
        if len(self._seen) > RECENT_IDS:
            self._seen.clear()
        return prepared

    def store(self, batch: tuple[bytearray, int]) -> int:
        data, count = batch
        write_stdout(data)
        return count

    def close(self) -> None:
        return None
