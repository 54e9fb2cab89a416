"""stdout sink: JSON lines to standard output, for pipes (``logctl consume --sink stdout | jq``).

It drops duplicates among the last ``RECENT_IDS`` records of this run only: what it
printed in an earlier run is out of its sight.
"""

from __future__ import annotations

import sys

import orjson

from logctl.codec import row_to_dict
from logctl.records import WireRow

RECENT_IDS = 1_000_000


class StdoutSink:
    """Write records as JSON lines to stdout, flushed per batch."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def write(self, rows: list[WireRow]) -> int:
        data = bytearray()  # one buffer: many small orjson results each hold ~4 KiB
        count = 0
        for r in rows:
            rid = r[0]
            if rid in self._seen:
                continue
            self._seen.add(rid)
            data += orjson.dumps(row_to_dict(r), default=str, option=orjson.OPT_APPEND_NEWLINE)
            count += 1
        out = sys.stdout.buffer
        out.write(data)
        out.flush()
        if len(self._seen) > RECENT_IDS:
            self._seen.clear()
        return count

    def close(self) -> None:
        return None
