"""Sources: files and stdin read as bytes, cut into lines with exact byte offsets.

A source owns a LineParser and collects ``(record, end_offset)`` pairs in ``ready``.
Lines longer than ``max_line_bytes`` keep only their head in memory (the rest is
skipped and counted); invalid UTF-8 becomes replacement characters, NUL bytes stay,
and each is flagged in attrs. A trailing partial line waits for its newline.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import uuid
from dataclasses import dataclass, replace
from itertools import accumulate
from typing import Any

from logctl.parsing import LineParser
from logctl.parsing.formats import DETECT, ParseOptions
from logctl.parsing.layout import LEARN_BYTES, RELEARN_BYTES, with_layout
from logctl.processing import NO_PROCESSING, Processing, ProcessingOptions, processing_of
from logctl.records import WireRow, source_prefix

FINGERPRINT_MAX = 1024
# A file whose first bytes equal another's up to this many is taken for its copy (copytruncate).
COPY_PROBE_MAX = 64 * 1024
COPY_PROBE_MIN = 1024
FLAG_INVALID_UTF8 = "logctl.invalid_utf8"
FLAG_NUL = "logctl.nul_bytes"
FLAG_TRUNCATED = "logctl.truncated_bytes"
_PLUS_NEWLINE = (1).__add__  # a line's size with its newline, in C: map() calls it per line


@dataclass(frozen=True, slots=True)
class RecordShape:
    """What shapes a source's records, fixed when the source is made (it cannot be changed later).

    Every way records are made (a file, stdin, a parse worker's block, ``--explain``) builds
    its parser from one of these, so an option means the same on every path.
    """

    service: str  # for records that name none
    max_line_bytes: int = 1 << 20
    parse: ParseOptions = DETECT  # detected, or one format forced (--format, path_formats)
    path: str | None = None  # a file's path: its batches carry it, readers put it in attrs (log.file.path)
    timezone: str = ""  # the zone of stamps that write none ("" = UTC)
    processing: ProcessingOptions = NO_PROCESSING  # --min-level, --drop, --redact ... for this source

    def parser(self, prefix: str) -> LineParser:
        """A parser for this source's lines, with record ids under ``prefix``."""
        return LineParser(prefix, self.service, options=self.parse)


@dataclass(slots=True)
class _LongLine:
    start: int
    head: bytes
    total: int


def fingerprint_of(first: bytes) -> str:
    """Return the hex digest that identifies a file by its first line."""
    return hashlib.blake2b(first, digest_size=16).hexdigest()


class Source:
    """Bytes in, records out. Subclasses say where the bytes come from."""

    name: str

    def __init__(self, shape: RecordShape) -> None:
        self._shape = shape
        self.max_line_bytes = shape.max_line_bytes
        self.parser: LineParser | None = None
        self.processing: Processing | None = processing_of(shape.processing)  # None: nothing asked for
        self.ready: list[tuple[WireRow, int]] = []
        self.pos = 0  # bytes consumed from the source
        self.lines = 0
        self.bytes = 0
        self.eof = False
        self.idle_since = 0.0
        self._buffer = b""
        self._long: _LongLine | None = None

    @property
    def shape(self) -> RecordShape:
        """What shapes this source's records (given when it was made)."""
        return self._shape

    @property
    def service(self) -> str:
        return self._shape.service

    def start_parser(self, prefix: str, offset: int) -> None:
        """Begin parsing at ``offset`` with record ids under ``prefix``."""
        self.parser = self._shape.parser(prefix)
        self.parser.emitted_end = offset
        self.pos = offset

    def read(self, max_bytes: int) -> int:
        """Read up to ``max_bytes`` and parse what forms complete lines; returns bytes read."""
        raise NotImplementedError

    def finish(self) -> None:
        """At the true end of input: the partial last line becomes a line, the open record completes."""
        if self.parser is None:
            return
        if self._long is not None:
            self._emit_long(self.pos)
        if self._buffer:
            start = self.pos - len(self._buffer)
            self._buffer, rest = b"", self._buffer
            self._raw_line(rest, start, self.pos)
        self.flush_record()

    def flush_record(self) -> None:
        """Complete the record still open (multi-line timeout or end of input)."""
        if self.parser is not None:
            record = self.parser.flush()
            if record is not None:
                self.ready.append((record, self.parser.emitted_end))

    def close(self) -> None:
        """Release what the source holds open."""
        return None

    @property
    def line_start(self) -> int:
        """Offset of the first byte not yet cut into lines (the partial line, if any)."""
        if self._long is not None:
            return self._long.start
        return self.pos - len(self._buffer)

    def drop_partial(self) -> None:
        """Forget the partial last line (its file was truncated under it)."""
        self._buffer = b""
        self._long = None

    @property
    def in_long_line(self) -> bool:
        """Whether a line longer than ``max_line_bytes`` is being read."""
        return self._long is not None

    def pop_partial(self) -> bytes:
        """Hand back the partial last line held, as if it had not been read yet."""
        partial, self._buffer = self._buffer, b""
        self.pos -= len(partial)
        self.bytes -= len(partial)
        return partial

    @property
    def has_open_record(self) -> bool:
        return self.parser is not None and self.parser.pending_start is not None

    # --- cutting bytes into lines ----------------------------------------------------------

    def take(self, data: bytes) -> None:
        """Account ``data`` just read (already added to ``pos``) and parse its complete lines."""
        self.bytes += len(data)
        if self._long is not None:
            newline = data.find(b"\n")
            if newline < 0:
                self._long.total += len(data)
                return
            self._long.total += newline
            self._emit_long(self._long.start + self._long.total + 1)
            data = data[newline + 1 :]
        buf = self._buffer + data if self._buffer else data
        base = self.pos - len(buf)
        last = buf.rfind(b"\n")
        if last < 0:
            self._buffer = buf
        else:
            self._buffer = buf[last + 1 :]
            self.parse_lines(buf[:last], base)
        if len(self._buffer) > self.max_line_bytes:
            start = self.pos - len(self._buffer)
            self._long = _LongLine(start, self._buffer[: self.max_line_bytes], len(self._buffer))
            self._buffer = b""

    def _emit_long(self, end: int) -> None:
        long, self._long = self._long, None
        assert long is not None
        self._raw_line(long.head, long.start, end, {FLAG_TRUNCATED: long.total})

    def parse_lines(self, block: bytes, base: int) -> None:
        """Parse the newline-separated lines of ``block``, which starts at byte ``base``.

        Valid UTF-8 without NUL bytes takes the fast path (one decode for the block); a
        block with invalid UTF-8 or NUL bytes is handled line by line, so that only the
        bad lines are flagged.
        """
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is None or "\x00" in text:
            offset = base
            for raw in block.split(b"\n"):
                end = offset + len(raw) + 1
                self._raw_line(raw, offset, end)
                offset = end
            return
        lines = text.split("\n")
        self.lines += len(lines)
        if text.isascii():
            sizes = list(map(len, lines))
        else:
            sizes = [len(line) if line.isascii() else len(line.encode()) for line in lines]
        bounds = list(accumulate(map(_PLUS_NEWLINE, sizes), initial=base))  # line i: [bounds[i], bounds[i + 1])
        whole = lines
        if "\r" in text:
            lines = [line[:-1] if line[-1:] == "\r" else line for line in lines]
        limit = self.max_line_bytes
        if max(sizes) <= limit:
            self._feed(lines, bounds)
            return
        run = 0  # lines over the limit take the slow path, between runs of the others
        for i, size in enumerate(sizes):
            if size > limit:
                self._feed(lines[run:i], bounds[run : i + 1])
                self.lines -= 1  # counted again by _raw_line
                self._raw_line(whole[i].encode(), bounds[i], bounds[i + 1])
                run = i + 1
        self._feed(lines[run:], bounds[run:])

    def _feed(self, lines: list[str], bounds: list[int]) -> None:
        assert self.parser is not None
        self.parser.feed_lines(lines, bounds, self.ready)

    def _raw_line(self, raw: bytes, start: int, end: int, flags: dict[str, Any] | None = None) -> None:
        """Parse one line the slow way: check its length, encoding and NUL bytes."""
        if len(raw) > self.max_line_bytes:
            flags = {**(flags or {}), FLAG_TRUNCATED: len(raw)}
            raw = raw[: self.max_line_bytes]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", "replace")
            flags = {**(flags or {}), FLAG_INVALID_UTF8: True}
        if "\x00" in line:
            flags = {**(flags or {}), FLAG_NUL: True}
        if line and line[-1] == "\r":
            line = line[:-1]
        self.lines += 1
        assert self.parser is not None
        record = self.parser.feed(line, start, end, flags)
        if record is not None:
            self.ready.append((record, self.parser.emitted_end))


class StdinSource(Source):
    """Standard input (or any pipe fd). Not resumable: no checkpoint.

    Record ids are the stream's name and byte offsets. Unnamed, a stream gets a new name
    each run: two runs never share ids, so the sink keeps both even when they begin with
    the same bytes (a cron job's banner). Named (``--source-id``), the same stream shipped
    again under the same name stores nothing twice, e.g. after ship was killed mid-way.
    """

    def __init__(self, shape: RecordShape, source_id: str | None = None, fd: int = 0) -> None:
        super().__init__(shape)
        self.name = "-"
        self.fd = fd
        name = f"named:{source_id}" if source_id is not None else f"run:{uuid.uuid4().hex}"
        self.start_parser(source_prefix(f"stdin:{name}".encode()), 0)

    def read(self, max_bytes: int) -> int:
        if self.eof:
            return 0
        readable, _, _ = select.select([self.fd], [], [], 0)
        if not readable:
            return 0
        data = os.read(self.fd, max_bytes)
        if not data:
            self.eof = True
            return 0
        self.pos += len(data)
        self.take(data)
        return len(data)


class FileSource(Source):
    """One open file, known by device, inode and the fingerprint of its first line.

    Until the first line is complete (or ``FINGERPRINT_MAX`` bytes exist) the file is not
    identified and not read: its identity, and so its record ids, must not change later.
    """

    def __init__(self, path: str, fd: int, st: os.stat_result, shape: RecordShape) -> None:
        super().__init__(shape)
        self.name = path
        self.fd = fd
        self.key = f"{st.st_dev}:{st.st_ino}"
        self.fingerprint: str | None = None
        self.fingerprint_len = 0
        self.prefix: str | None = None
        self.moved_since: float | None = None  # when the path stopped pointing at this file
        self.superseded = False  # truncated: a new source took over this inode
        self.from_end = False  # start at the end when first seen (``--from-end``)
        self.probe: tuple[str, int] | None = None  # hash and length of the first bytes, to spot copies
        self.compressed = False  # a decompressed copy of a compressed file (compressed.py): finished
        self._learned_at = LEARN_BYTES  # head size the layout was last learned from (begin sets it)

    def head(self, size: int) -> bytes:
        return os.pread(self.fd, size, 0)

    def first_line(self, final: bool) -> bytes | None:
        """Return the identifying first line, or None while it is incomplete."""
        head = self.head(FINGERPRINT_MAX)
        newline = head.find(b"\n")
        if newline >= 0:
            return head[: newline + 1]
        if len(head) >= FINGERPRINT_MAX or (final and head):
            return head
        return None

    def identify(self, first: bytes, derive_from: str | None = None) -> None:
        """Fix this file's identity; ``derive_from`` is the prefix of the content it replaced."""
        self.fingerprint = fingerprint_of(first)
        self.fingerprint_len = len(first)
        seed = (derive_from or self.key).encode()
        self.prefix = source_prefix(seed + b":" + first)

    def take_probe(self) -> None:
        """Remember a hash of the first bytes (up to 64 KiB), by which a copy of this file is known."""
        if self.compressed:
            return  # known by its content key; copytruncate does not make archives
        head = self.head(COPY_PROBE_MAX)
        self.probe = (fingerprint_of(head), len(head)) if len(head) >= COPY_PROBE_MIN else None

    def same_content(self, fingerprint: str, length: int) -> bool:
        """Whether the file still starts with the line it had when fingerprinted."""
        head = self.head(length)
        return len(head) == length and fingerprint_of(head) == fingerprint

    def begin(self, offset: int) -> None:
        """Start reading (and parsing) at ``offset``, in the layout the file's first lines show."""
        assert self.prefix is not None
        self._learn_layout()
        os.lseek(self.fd, offset, os.SEEK_SET)
        self.start_parser(self.prefix, offset)

    def _learn_layout(self) -> None:
        """Take the layout the file's first lines show, if they show one (a new file: once it has them)."""
        head = self.head(LEARN_BYTES)
        self._learned_at = len(head)
        options = with_layout(self._shape.parse, head)
        if options is not self._shape.parse:
            self._shape = replace(self._shape, parse=options)
            if self.parser is not None:
                self.parser.adopt_layout(options)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def read_raw(self, max_bytes: int) -> bytes:
        """Read up to ``max_bytes`` from the current position, without parsing or accounting them."""
        return os.read(self.fd, max_bytes)

    def read(self, max_bytes: int) -> int:
        if self.parser is None:
            return 0
        data = self.read_raw(max_bytes)
        if not data:
            self.eof = True
            return 0
        self.eof = False
        self.pos += len(data)
        self.take(data)
        if (
            self._learned_at < LEARN_BYTES
            and self.pos - self._learned_at >= RELEARN_BYTES
            and self._shape.parse.layout is None
        ):
            self._learn_layout()  # a file that began short: its first lines are here now
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
