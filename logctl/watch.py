"""Finding files: glob expansion with excludes, and wake-ups from filesystem events.

watchdog's events only wake the shipper early; it rescans on a timer as well, because
inotify misses events on some filesystems (NFS, some container overlays).
"""

from __future__ import annotations

import fnmatch
import glob
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


def expand(patterns: Iterable[str], exclude: Iterable[str] = ()) -> list[str]:
    """Return the regular files the patterns match now (``**`` recurses), minus excluded ones."""
    excluded = tuple(exclude)
    found: dict[str, None] = {}
    for pattern in patterns:
        matches = glob.glob(os.path.expanduser(pattern), recursive=True) if glob.has_magic(pattern) else [pattern]
        for path in sorted(matches):
            name = os.path.basename(path)
            if any(fnmatch.fnmatch(path, ex) or fnmatch.fnmatch(name, ex) for ex in excluded):
                continue
            if os.path.isfile(path):
                found[path] = None
    return list(found)


def watched_dirs(patterns: Iterable[str]) -> list[str]:
    """Return the existing directories whose changes may add or rotate matching files."""
    dirs: dict[str, None] = {}
    for pattern in patterns:
        head = Path(os.path.expanduser(pattern))
        while glob.has_magic(str(head)) or not head.is_dir():
            if head.parent == head:
                break
            head = head.parent
        if head.is_dir():
            dirs[str(head)] = None
    return list(dirs)


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.event.set()


class Watcher:
    """Set ``wake`` whenever something changes under the directories of the patterns."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.wake = threading.Event()
        self._observer = Observer()
        handler = _Wake(self.wake)
        for directory in watched_dirs(patterns):
            self._observer.schedule(handler, directory, recursive=any("**" in p for p in patterns))
        self._observer.daemon = True

    def __enter__(self) -> Watcher:
        self._observer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._observer.stop()
        self._observer.join(timeout=2)
