"""JSON Lines file sink: one object per record, appended and fsynced per batch.

Idempotent across restarts: on open it reads the ids already in the file (and cuts off a
torn last line a crash may have left, whose records were never acknowledged).
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from logctl.errors import PermissionDenied
from logctl.records import WireRow
from logctl.sinks import unseen_json_lines


def _existing_ids(path: Path) -> set[str]:
    ids: set[str] = set()
    try:
        with path.open("rb+") as fh:
            good = 0
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                good += len(line)
                try:
                    ids.add(orjson.loads(line)["id"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue
            fh.truncate(good)
    except FileNotFoundError:
        pass
    return ids


class JsonFileSink:
    """Append records as JSON lines to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._seen = _existing_ids(path)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except PermissionError as exc:
            raise PermissionDenied(f"cannot write file sink {path}: permission denied") from exc

    def prepare(self, rows: list[WireRow]) -> tuple[bytearray, int]:
        """Return the JSON lines of the records not in the file yet, and how many they are."""
        return unseen_json_lines(rows, self._seen)

    def store(self, batch: tuple[bytearray, int]) -> int:
        data, count = batch
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        if count:
            os.fsync(self._fd)
        return count

    def close(self) -> None:
        os.close(self._fd)
