"""File tracking for ship: which files to read, who they are, and when to let them go.

Discovery (globs, re-scans), identity (device and inode, and the fingerprint of the
first line, so a checkpoint finds its content again), rotation (a file renamed or
deleted is read to its end, then retired after ``rotate_wait``), files rotated while
ship was stopped, copies (copytruncate: a new file whose first bytes repeat another's
keeps its ids) and truncation (read again from 0 under ids derived from the old ones).
The tracker opens and retires ``FileSource``s; reading them is the Shipper's job, and
records a retiring file still holds are handed to ``drain``.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from logctl.checkpoint import CheckpointStore
from logctl.compressed import (
    CONTENT_KEY_PREFIX,
    SNIFF_BYTES,
    DecompressError,
    compression_of,
    content_key,
    decompressed,
    is_binary,
)
from logctl.errors import NotFound, PermissionDenied
from logctl.sources import COPY_PROBE_MAX, FileSource, Source, fingerprint_of
from logctl.watch import expand

if TYPE_CHECKING:
    from logctl.shipper import ShipOptions

Notify = Callable[[str], None]


def default_service(path: str) -> str:
    """Return the service of a file's records when they name none: the file's stem."""
    if path == "-":
        return "stdin"
    name = Path(path).name
    for suffix in (".gz", ".xz", ".bz2", ".zst", ".log", ".txt", ".json", ".jsonl", ".out", ".err"):
        name = name.removesuffix(suffix)
    return name.split(".")[0] or "unknown"


@dataclass(frozen=True, slots=True)
class _Copyable:
    """What identifies a file's content for its copies: probe hash, ids, and how far it was read."""

    name: str
    probe: tuple[str, int]
    prefix: str
    fingerprint: str
    fingerprint_len: int
    line_start: int

    @staticmethod
    def of(src: FileSource) -> _Copyable:
        assert src.probe is not None and src.prefix is not None and src.fingerprint is not None
        return _Copyable(src.name, src.probe, src.prefix, src.fingerprint, src.fingerprint_len, src.line_start)


class FileTracker:
    """The files a ship follows: ``sources`` by "dev:inode", and ``retired`` ones not yet fully confirmed."""

    def __init__(
        self,
        options: ShipOptions,
        store: CheckpointStore | None,
        notify: Notify,
        *,
        drain: Callable[[Source], None],
        on_begin: Callable[[FileSource, int], None],
    ) -> None:
        """``drain`` takes a source's completed records; ``on_begin`` learns where a file starts being read."""
        self.options = options
        self.store = store
        self.notify = notify
        self.drain = drain
        self.on_begin = on_begin
        self.patterns = tuple(p for p in options.paths if p != "-")
        self.sources: dict[str, FileSource] = {}
        self.retired: list[FileSource] = []
        self.opened = 0
        self._derive: dict[str, str] = {}  # inode key -> prefix of the content a truncation replaced
        self._truncated: list[_Copyable] = []  # content gone from its file, maybe kept in a copy
        self._warned: set[str] = set()
        # Files not followed as text, by "dev:inode": compressed ones (read once, from a
        # decompressed copy, under their content key) and binary ones (skipped).
        self._not_text: set[str] = set()

    def scan(self, initial: bool) -> None:
        """Open files that newly match; note which followed files the patterns no longer reach."""
        seen: set[str] = set()
        now = time.time()
        for path in expand(self.patterns, self.options.exclude):
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = f"{st.st_dev}:{st.st_ino}"
            seen.add(key)
            if key in self._not_text:
                continue
            src = self.sources.get(key)
            if src is not None:
                src.name = path  # renamed but still matched (app.log -> app.log.1 under app.log*)
                src.moved_since = None
                continue
            known = self.store is not None and self.store.get(key) is not None
            ignore = self.options.ignore_older_s
            if ignore is not None and not known and now - st.st_mtime > ignore:
                continue
            self._open(path, st, initial)
        if initial:
            self._finish_rotated_while_down(seen)
        for key, src in self.sources.items():
            if key not in seen and src.moved_since is None:
                src.moved_since = time.monotonic()
        if not self.options.follow:
            return
        for src in list(self.sources.values()):
            self._check_truncated(src)
            if src.parser is not None and not src.superseded and (src.probe is None or src.probe[1] < COPY_PROBE_MAX):
                src.take_probe()  # a file that was small when first seen: probe again as it grows

    def _finish_rotated_while_down(self, seen: set[str]) -> None:
        """Files rotated away while ship was stopped: read each to its end from its checkpoint.

        A checkpointed file of these patterns whose inode is no longer at its path is looked
        for beside it (rotation renames within a directory); if it is found with unshipped
        bytes, it is read to the end and then let go, like a file rotated under a running ship.
        """
        if self.store is None:
            return
        for cp in list(self.store.entries.values()):
            if cp.key.startswith(CONTENT_KEY_PREFIX):
                continue  # a compressed file: found again by its content, wherever it is
            if cp.key in seen or cp.key in self.sources or not matches_any(cp.path, self.patterns):
                continue
            path = find_inode(os.path.dirname(cp.path) or ".", cp.key)
            if path is None:
                continue
            st = os.stat(path)
            if st.st_size <= cp.offset:
                continue
            self.notify(f"{cp.path} was rotated to {path} while ship was stopped; finishing it")
            self._open(path, st, initial=False)
            src = self.sources.get(cp.key)
            if src is not None:
                src.moved_since = time.monotonic()

    def _open(self, path: str, st: os.stat_result, initial: bool) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return
        except PermissionError:
            self.warn_once(path, f"cannot read {path}: permission denied; skipping it")
            return
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)  # replaced between stat and open; the next scan finds the new one
            return
        head = os.pread(fd, SNIFF_BYTES, 0)
        kind = compression_of(head)
        if kind is not None:
            self._open_compressed(path, fd, f"{st.st_dev}:{st.st_ino}", kind)
            return
        if is_binary(head):
            os.close(fd)
            self._not_text.add(f"{st.st_dev}:{st.st_ino}")
            self.warn_once(path, f"skipping {path}: a binary file, not text (a NUL byte in its first 8 KiB)")
            return
        src = FileSource(path, fd, opened, self.options.shape_for(path))
        src.from_end = initial and self.options.from_end
        self.sources[src.key] = src
        self.opened += 1
        self.identify(src)

    def _open_compressed(self, path: str, fd: int, inode_key: str, kind: str) -> None:
        """A compressed rotation: read once, from a decompressed copy, under its content key.

        One that a checkpoint says was read to its end already is not decompressed again.
        """
        try:
            key = content_key(fd)
            checkpoint = self.store.get(key) if self.store is not None else None
            if checkpoint is not None and checkpoint.complete:
                self._not_text.add(inode_key)
                return
            if any(s.key == key for s in [*self.sources.values(), *self.retired]):
                self._not_text.add(inode_key)  # the same archive under another name, being read
                return
            directory = str(self.store.path.parent) if self.store is not None else None
            plain = decompressed(fd, kind, directory)
        except DecompressError as exc:
            # Damaged, or still being written (logrotate compresses in place): tried again when it changes.
            self.warn_once(f"{path}:{os.fstat(fd).st_size}", f"cannot read {path} ({exc}); skipping it for now")
            return
        finally:
            os.close(fd)
        self._not_text.add(inode_key)
        src = FileSource(path, plain, os.fstat(plain), self.options.shape_for(path))
        src.key = key
        src.compressed = True
        src.moved_since = time.monotonic()  # finished: let go once read to the end and confirmed
        self.sources[key] = src
        self.opened += 1
        self.notify(f"{path}: {kind}-compressed, reading what it holds once")
        self.identify(src)

    def identify(self, src: FileSource) -> bool:
        """Fix a file's identity and where to start reading; False while its first line is incomplete."""
        first = src.first_line(final=not self.options.follow)
        if first is None:
            return False
        derived = self._derive.pop(src.key, None)
        checkpoint = self.store.get(src.key) if self.store is not None and derived is None else None
        original = self._copy_of(src) if checkpoint is None and derived is None else None
        if original is not None:
            # A copy (copytruncate): same ids as the original, from where the original was read.
            src.prefix, src.fingerprint, src.fingerprint_len = (
                original.prefix,
                original.fingerprint,
                original.fingerprint_len,
            )
            start = original.line_start
            self.notify(f"{src.name} is a copy of {original.name}; reading it from offset {start}")
        elif checkpoint is None:
            src.identify(first, derive_from=derived)
            start = src.size() if src.from_end else 0
        elif src.same_content(checkpoint.fingerprint, checkpoint.fingerprint_len) and src.size() >= checkpoint.offset:
            src.prefix = checkpoint.prefix
            src.fingerprint = checkpoint.fingerprint
            src.fingerprint_len = checkpoint.fingerprint_len
            start = checkpoint.offset
        else:
            # Truncated or rewritten while we were away (or the inode was reused): new content,
            # new ids, derived from the old ones so that a crash here derives the same again.
            src.identify(first, derive_from=checkpoint.prefix)
            start = 0
        src.begin(start)
        self.on_begin(src, start)
        src.take_probe()
        return True

    def _copy_of(self, src: FileSource) -> _Copyable | None:
        """The file (live, or truncated a moment ago) whose first bytes ``src`` repeats exactly."""
        candidates: list[_Copyable] = [
            _Copyable.of(s) for s in self.sources.values() if s is not src and s.probe is not None and not s.superseded
        ]
        for original in [*candidates, *self._truncated]:
            digest, length = original.probe
            head = src.head(length)
            if len(head) == length and fingerprint_of(head) == digest:
                return original
        return None

    def _check_truncated(self, src: FileSource) -> None:
        """copytruncate and in-place rewrites: read the file again from 0 under new ids."""
        if src.parser is None or src.superseded or src.fingerprint is None:
            return
        try:
            shrunk = src.size() < src.pos
            rewritten = not shrunk and not src.same_content(src.fingerprint, src.fingerprint_len)
        except OSError:
            return
        if not (shrunk or rewritten):
            return
        self.notify(f"{src.name} was truncated; reading it again from the start")
        if src.probe is not None:
            self._truncated = [*self._truncated[-7:], _Copyable.of(src)]
        src.drop_partial()  # cut by the truncation; whole in the copy, if there is one
        src.flush_record()
        self.drain(src)
        src.superseded = True
        self.retired.append(src)
        assert src.prefix is not None
        self._derive[src.key] = src.prefix
        fresh = FileSource(src.name, os.dup(src.fd), os.fstat(src.fd), src.shape)
        self.sources[src.key] = fresh
        self.identify(fresh)

    def retire_moved(self, now: float) -> None:
        """Let go of files rotated away or deleted, once read to the end and quiet for rotate_wait."""
        for key, src in list(self.sources.items()):
            if src.moved_since is None or not src.eof:
                continue
            if now - max(src.moved_since, src.idle_since) < self.options.rotate_wait_s:
                continue
            src.finish()
            self.drain(src)
            del self.sources[key]
            self.retired.append(src)

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.notify(message)


def matches_any(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``path`` is one of the literal paths or matches one of the globs."""
    return any(path == p or (glob.has_magic(p) and fnmatch.fnmatch(path, os.path.expanduser(p))) for p in patterns)


def find_inode(directory: str, key: str) -> str | None:
    """Return the path in ``directory`` of the regular file whose "dev:inode" is ``key``."""
    dev, ino = (int(part) for part in key.split(":"))
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        try:
            if entry.inode() == ino and entry.is_file(follow_symlinks=False) and entry.stat().st_dev == dev:
                return entry.path
        except OSError:
            continue
    return None


def check_paths(patterns: tuple[str, ...]) -> None:
    """Fail early, with the reason, on a named file that is missing, a directory or unreadable."""
    for pattern in patterns:
        if pattern == "-" or glob.has_magic(pattern):
            continue
        if not os.path.exists(pattern):
            raise NotFound(f"no such file: {pattern}")
        if os.path.isdir(pattern):
            raise NotFound(f"{pattern} is a directory: give files or a glob such as {pattern.rstrip('/')}/*.log")
        try:
            os.close(os.open(pattern, os.O_RDONLY))
        except PermissionError:
            raise PermissionDenied(f"cannot read {pattern}: permission denied") from None


@dataclass(frozen=True, slots=True)
class FileStatus:
    """One file the state dir knows: how far it is shipped and how far behind."""

    path: str
    offset: int
    size: int | None
    behind: int | None
    updated: float


def ship_status(store: CheckpointStore) -> list[FileStatus]:
    """Return the files a state dir knows, with their confirmed offsets and lag."""
    rows = []
    for cp in store.entries.values():
        try:
            st = os.stat(cp.path)
            same = f"{st.st_dev}:{st.st_ino}" == cp.key
        except OSError:
            same = False
        size = st.st_size if same else None
        rows.append(
            FileStatus(cp.path, cp.offset, size, None if size is None else max(size - cp.offset, 0), cp.updated)
        )
    return sorted(rows, key=lambda r: r.path)
