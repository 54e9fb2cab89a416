"""Durable offsets: per file identity, how far every record was confirmed by the broker.

``Progress`` is the live side: for one source, the marks ``[end_offset, batch]`` of its
records in read order; when a batch is confirmed the leading marks whose batches are
all confirmed are popped and ``checkpointed`` moves to the last one's end. So it only
ever covers confirmed records, and killed at any instant a restart re-reads at most
what was unconfirmed (the record ids, source identity + byte offset, let the sinks drop
what arrives twice).

The store is one JSON file in the state dir, replaced atomically (write, fsync, rename,
fsync the directory), so a crash leaves either the old or the new version, never a torn
one. Offsets only ever cover confirmed records, so a checkpoint is safe to write at any
moment, including on a second Ctrl-C.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import orjson

from logctl.errors import ConfigError, Locked, PermissionDenied

CHECKPOINT_FILE = "checkpoints.json"
LOCK_FILE = "ship.lock"


class Confirmable(Protocol):
    @property
    def confirmed(self) -> bool: ...


class Mark:
    """A source's records up to ``end`` travel in ``batch`` (a batch, or a receipt of several)."""

    __slots__ = ("batch", "end")

    def __init__(self, end: int, batch: Confirmable) -> None:
        self.end = end
        self.batch = batch


class Progress:
    """How far one source's records are confirmed; a ``Waiter`` of the batches holding them."""

    __slots__ = ("checkpointed", "marks")

    def __init__(self, offset: int = 0) -> None:
        self.marks: deque[Mark] = deque()
        self.checkpointed = offset  # every record before this offset is confirmed

    def advance(self) -> None:
        """Move the checkpoint past every leading mark whose records are confirmed."""
        marks = self.marks
        while marks and marks[0].batch.confirmed:
            self.checkpointed = marks.popleft().end

    @property
    def settled(self) -> bool:
        """Whether nothing of the source is still waiting for a confirm."""
        return not self.marks


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where one file stands: ``offset`` bytes of it are confirmed."""

    key: str  # "dev:inode"
    path: str
    prefix: str  # record id prefix of this file generation
    fingerprint: str  # hash of the first line, identifies the content at this inode
    fingerprint_len: int
    offset: int
    updated: float
    complete: bool = False  # a finished (compressed) file, confirmed to its end: never read again


class CheckpointStore:
    """Load and atomically save the checkpoints of a state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / CHECKPOINT_FILE
        self.entries: dict[str, Checkpoint] = {}
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except PermissionError as exc:
            raise PermissionDenied(f"cannot use state dir {state_dir}: permission denied") from exc
        try:
            data = orjson.loads(raw)
            self.entries = {e["key"]: Checkpoint(**e) for e in data["files"]}
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"checkpoint file {self.path} is damaged ({exc}); move it away to start over") from exc

    def get(self, key: str) -> Checkpoint | None:
        return self.entries.get(key)

    def put(self, checkpoint: Checkpoint) -> None:
        self.entries[checkpoint.key] = checkpoint

    def save(self) -> None:
        """Replace the checkpoint file atomically with the current entries."""
        data = orjson.dumps(
            {"version": 1, "files": [asdict(e) for e in self.entries.values()]}, option=orjson.OPT_INDENT_2
        )
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@contextlib.contextmanager
def state_lock(state_dir: Path) -> Iterator[None]:
    """Hold the state dir's ship lock for the block; Locked names the holder if taken."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as exc:
        raise PermissionDenied(f"cannot use state dir {state_dir}: permission denied") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise Locked(
                f"another logctl ship (pid {holder}) is using state dir {state_dir}; "
                "stop it or give this one its own --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
