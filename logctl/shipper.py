"""ship: sources -> records -> batches per routing key -> confirmed publishing -> checkpoints.

The invariant everything here serves: a file's checkpoint only ever covers records the
broker confirmed. Each source keeps a queue of marks ``[end_offset, batch]`` in read
order; when a batch is confirmed the marks at the head whose batches are all confirmed
are popped and the checkpoint moves to the last one's end. Killed at any instant, a
restart re-reads at most what was unconfirmed, and the record ids (source identity +
byte offset) let the sinks drop what arrives twice.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import fnmatch
import glob
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from logctl.checkpoint import Checkpoint, CheckpointStore, state_lock
from logctl.codec import RowPacker, decode_rows
from logctl.config import Settings
from logctl.errors import BrokerUnreachable, NotFound, PermissionDenied
from logctl.parallel import BLOCK_BYTES, MIN_BACKLOG_BYTES, ROUND_SECONDS, BlockJob, BlockPool, BlockResult
from logctl.records import ROW_ID, ROW_LEVEL, ROW_SERVICE, WireRow, routing_key
from logctl.sources import COPY_PROBE_MAX, FileSource, Mark, Source, StdinSource, fingerprint_of
from logctl.transport import Broker, Outgoing, Publisher, declare_topology, topology_of
from logctl.watch import Watcher, expand

Notify = Callable[[str], None]


# A batch is sent once it holds this many bytes, whatever its record count: RabbitMQ refuses
# messages over its max_message_size (128 MiB by default), and 1,000 lines of 1 MiB would
# make one batch of a gigabyte that no retry could ever publish.
MAX_BATCH_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class ShipOptions:
    """What to ship and how."""

    paths: tuple[str, ...]
    follow: bool = True
    service: str | None = None
    source_id: str | None = None  # stdin's name, for ids stable across runs (see StdinSource)
    batch_size: int = 2048
    linger_s: float = 0.2
    serializer: str = "msgpack"
    from_end: bool = False
    ignore_older_s: float | None = None
    exclude: tuple[str, ...] = ()
    max_line_bytes: int = 1 << 20
    rotate_wait_s: float = 5.0
    shutdown_timeout_s: float = 30.0
    multiline_timeout_s: float = 1.0
    rescan_s: float = 1.0
    read_chunk: int = 64 << 10  # small reads keep a round's records in the CPU cache: 20% faster than 1 MiB
    checkpoint_interval_s: float = 1.0
    workers: int = 0  # processes that parse a large backlog; 0 = all in this process


@dataclass(slots=True)
class ShipStats:
    """What a ship run did."""

    lines: int = 0
    records: int = 0
    batches: int = 0
    bytes: int = 0
    files: int = 0
    unconfirmed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds


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


class Batch:
    """Records of one routing key (as encoded rows) on their way; ``confirmed`` once the broker said so."""

    __slots__ = ("bytes", "confirmed", "count", "created", "key", "rows", "sources")

    def __init__(self, key: str, created: float) -> None:
        self.key = key
        # Encoded rows; an item may hold several back to back (a view of a parse worker's result).
        self.rows: list[bytes | memoryview] = []
        self.count = 0  # rows in ``rows``
        self.bytes = 0  # their encoded size
        self.sources: list[Source] = []
        self.created = created
        self.confirmed = False

    def full(self, size: int) -> bool:
        """Whether the batch is due: ``size`` records, or MAX_BATCH_BYTES of them."""
        return self.count >= size or self.bytes >= MAX_BATCH_BYTES

    def add_source(self, src: Source) -> None:
        """Note that ``src`` has records here (once: its marks are checked when this is confirmed)."""
        if not self.sources or self.sources[-1] is not src:
            self.sources.append(src)


class _Together:
    """The batches holding one parsed block's records: confirmed once all of them are."""

    __slots__ = ("batches",)

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    @property
    def confirmed(self) -> bool:
        return all(b.confirmed for b in self.batches)


class Output(Protocol):
    """Where batches go: the broker (Publisher) or, for --dry-run, the screen."""

    @property
    def in_flight(self) -> int: ...

    def publish(self, out: Outgoing) -> None: ...

    def poll(self) -> None: ...

    def end_round(self) -> None:
        """Called once a read round sent every batch due (``poll`` may come mid-round)."""

    def wait_confirmed(self, timeout: float | None = None) -> bool: ...


class EchoOutput:
    """--dry-run: hand the records of sent batches to a callback in file order; confirm at once.

    Batches hold one routing key each, so they arrive grouped by key. The records sent
    in a round are put back in the order of their ids (a source's prefix, then its byte
    offset, zero-padded) before they are shown; ship's dry run lingers for no batch, so
    by the end of a round everything read so far has been sent.
    """

    def __init__(self, on_confirm: Callable[[object], None], on_records: Callable[[list[WireRow]], None]) -> None:
        self.on_confirm = on_confirm
        self.on_records = on_records
        self.in_flight = 0
        self._sent: list[WireRow] = []

    def publish(self, out: Outgoing) -> None:
        self._sent.extend(decode_rows(out.body, out.content_type))  # exactly what would have travelled
        self.on_confirm(out.token)

    def poll(self) -> None:
        return None

    def end_round(self) -> None:
        if self._sent:
            rows, self._sent = self._sent, []
            rows.sort(key=_row_id)
            self.on_records(rows)

    def wait_confirmed(self, timeout: float | None = None) -> bool:
        self.end_round()
        return True


def _row_id(row: WireRow) -> str:
    return str(row[ROW_ID])


def default_service(path: str) -> str:
    """Return the service of a file's records when they name none: the file's stem."""
    if path == "-":
        return "stdin"
    name = Path(path).name
    for suffix in (".gz", ".log", ".txt", ".json", ".jsonl", ".out", ".err"):
        name = name.removesuffix(suffix)
    return name.split(".")[0] or "unknown"


class Shipper:
    """Follow (or read once) files and stdin and ship their records."""

    def __init__(
        self,
        options: ShipOptions,
        make_output: Callable[[Callable[[object], None]], Output],
        store: CheckpointStore | None,
        notify: Notify,
        pool: BlockPool | None = None,
    ) -> None:
        """``pool``: parse workers already started (see ship()); by default, its own."""
        self.options = options
        self.store = store
        self.notify = notify
        self.output = make_output(self._on_confirm)
        self.stats = ShipStats()
        self.sources: dict[str, FileSource] = {}
        self.retired: list[FileSource] = []
        self.stdin: StdinSource | None = None
        self._batches: dict[str, Batch] = {}
        self._packer = RowPacker(options.serializer)
        if pool is None and options.workers > 0:
            pool = BlockPool(options.workers)
        self._pool = pool
        self._stop: Callable[[], bool] = lambda: False
        self._derive: dict[str, str] = {}  # inode key -> prefix of the content a truncation replaced
        self._truncated: list[_Copyable] = []  # content gone from its file, maybe kept in a copy
        self._warned: set[str] = set()
        self._file_patterns = tuple(p for p in options.paths if p != "-")
        if "-" in options.paths:
            self.stdin = StdinSource(options.service or "stdin", options.max_line_bytes, options.source_id)

    # --- the loop --------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool]) -> ShipStats:
        """Ship until the input ends (no-follow, stdin) or ``stop()``; then flush and checkpoint."""
        self._stop = stop
        check_paths(self._file_patterns)
        watcher = Watcher(self._file_patterns) if self.options.follow and self._file_patterns else None
        if watcher is not None:
            watcher.__enter__()
        try:
            self._scan(initial=True)
            self._loop(stop, watcher)
            self._shutdown()
        finally:
            if watcher is not None:
                watcher.__exit__(None, None, None)
            self._save()
            for src in [*self.sources.values(), *self.retired]:
                src.close()
            if self._pool is not None:
                self._pool.close()
        return self._final_stats()

    def _loop(self, stop: Callable[[], bool], watcher: Watcher | None) -> None:
        opts = self.options
        last_scan = last_save = time.monotonic()
        while not stop():
            got = self._read_round()
            now = time.monotonic()
            self._send_lingering(now)
            self.output.end_round()
            if now - last_save >= opts.checkpoint_interval_s:
                self._save()
                last_save = now
            if self._input_done():
                break
            if not opts.follow:
                continue
            woke = watcher is not None and watcher.wake.is_set()
            if woke or now - last_scan >= opts.rescan_s:
                if watcher is not None:
                    watcher.wake.clear()
                self._scan(initial=False)
                self._retire_moved(now)
                last_scan = now
            if not got:
                self._flush_idle_records(now)
                if watcher is not None:
                    watcher.wake.wait(0.05)
                else:
                    time.sleep(0.02)

    def _input_done(self) -> bool:
        """No-follow: every file read to its end. Follow: only a stdin-only run ends (at EOF)."""
        if self.stdin is not None and not self.stdin.eof:
            return False
        if self.options.follow:
            return self.stdin is not None and not self._file_patterns
        return all(src.eof or src.parser is None for src in self.sources.values())

    def _shutdown(self) -> None:
        """Send what is batched, wait (bounded) for confirms.

        A following file keeps its open record and partial line for next time (its
        checkpoint stops before them); stdin cannot be read again, so it ships them now.
        """
        ending: list[Source] = [] if self.options.follow else list(self.sources.values())
        if self.stdin is not None:
            ending.append(self.stdin)
        for src in ending:
            src.finish()
            self._drain_ready(src)
        for batch in list(self._batches.values()):
            self._send(batch)
        if not self.output.wait_confirmed(self.options.shutdown_timeout_s):
            self.stats.unconfirmed = self.output.in_flight
            notice = [f"{self.output.in_flight} batch(es) still unconfirmed after {self.options.shutdown_timeout_s:g}s"]
            if self._file_patterns:
                notice.append("files will be read from their checkpoints again next time")
            if self.stdin is not None:
                notice.append("stdin's lines are stored only if it is shipped again under the same --source-id")
            self.notify("; ".join(notice))

    # --- reading ---------------------------------------------------------------------------

    def _all_sources(self) -> list[Source]:
        sources: list[Source] = list(self.sources.values())
        if self.stdin is not None:
            sources.append(self.stdin)
        return sources

    def _read_round(self) -> bool:
        got = False
        chunk = self.options.read_chunk
        for src in self._all_sources():
            if src.parser is None and isinstance(src, FileSource) and not self._identify(src):
                continue
            try:
                n = self._read_blocks(src) if self._wants_blocks(src) else src.read(chunk)
            except OSError as exc:
                self._warn_once(src.name, f"cannot read {src.name}: {exc.strerror}")
                continue
            if n:
                got = True
                src.idle_since = time.monotonic()
            if src.eof and not self.options.follow and isinstance(src, FileSource):
                src.finish()
            if src.ready:
                self._drain_ready(src)
        return got

    def _wants_blocks(self, src: Source) -> bool:
        """Whether a file is far enough behind to be parsed by the worker pool."""
        return (
            self._pool is not None
            and isinstance(src, FileSource)
            and src.parser is not None
            and not src.in_long_line
            and src.size() - src.pos >= MIN_BACKLOG_BYTES
        )

    def _read_blocks(self, src: Source) -> int:
        """Read a file's backlog for ROUND_SECONDS in blocks of whole lines, parsed by the pool."""
        assert self._pool is not None and isinstance(src, FileSource) and src.prefix is not None
        prefix, opts = src.prefix, self.options
        partial = src.pop_partial()
        start = src.pos
        tail = partial
        read = 0
        until = time.monotonic() + ROUND_SECONDS

        def jobs() -> Iterator[BlockJob]:
            nonlocal tail, read
            base = start
            while time.monotonic() < until and not self._stop():
                data = src.read_raw(BLOCK_BYTES)
                if not data:
                    return
                read += len(data)
                cut = data.rfind(b"\n") + 1  # tail holds no newline: the block ends in data
                if not cut:
                    tail += data
                    continue
                block = tail + memoryview(data)[:cut] if tail else data[:cut] if cut < len(data) else data
                tail = data[cut:]
                yield BlockJob(block, base, prefix, src.service, opts.max_line_bytes, opts.serializer)
                base += len(block)

        for job, result in self._pool.parse(jobs(), self.output.poll):
            self._apply_block(src, job, result)
        src.pos = start + len(partial) + read
        src.take(tail)  # a partial last line waits for its newline, as usual
        return read

    def _apply_block(self, src: Source, job: BlockJob, result: BlockResult) -> None:
        """Take a parsed block in: its ends through the source's parser, its middle as rows."""
        src.bytes += len(job.data)
        lead = result.lead_end - job.base
        if lead:
            src.parse_lines(job.data[: lead - 1], job.base)  # may continue the record open before
        if result.lead_end < job.end:
            src.flush_record()  # the block's first record starts here, so the open one is complete
            self._drain_ready(src)
            self._add_rows(src, result)
            src.lines += result.lines
            rest = result.rest_start - job.base
            src.parse_lines(job.data[rest:-1], result.rest_start)  # reopen the block's last record
        self._drain_ready(src)

    def _add_rows(self, src: Source, result: BlockResult) -> None:
        """Batch a block's encoded rows; the source's checkpoint passes them when all are confirmed."""
        size = self.options.batch_size
        touched: list[Batch] = []
        for key, (data, ends) in result.rows.items():
            buf = memoryview(data)  # slices of it are views, not copies: the body's join copies once
            taken = 0
            while taken < len(ends):
                batch = self._batches.get(key)
                if batch is None:
                    batch = self._batches[key] = Batch(key, time.monotonic())
                start = ends[taken - 1] if taken else 0
                # Up to the batch's record count, or through the row that fills its bytes.
                filled = bisect.bisect_left(ends, start + MAX_BATCH_BYTES - batch.bytes, taken) + 1
                upto = min(len(ends), taken + size - batch.count, filled)
                batch.rows.append(buf[start : ends[upto - 1]])
                batch.count += upto - taken
                batch.bytes += ends[upto - 1] - start
                taken = upto
                touched.append(batch)
                batch.add_source(src)
                if batch.full(size):
                    self._send(batch)
        src.marks.append(Mark(result.rest_start, _Together(touched)))
        self._advance(src)  # in case every batch was confirmed while the rest were still being sent

    def _drain_ready(self, src: Source) -> None:
        add = self._add
        rows = [row for row, _end in src.ready]
        for (row, end), packed in zip(src.ready, self._packer.pack_parsed(rows), strict=True):
            add(row, packed, end, src)
        src.ready.clear()

    def _flush_idle_records(self, now: float) -> None:
        """Complete multi-line records whose source has been quiet for the multi-line timeout."""
        for src in self._all_sources():
            if src.has_open_record and now - src.idle_since >= self.options.multiline_timeout_s:
                src.flush_record()
                self._drain_ready(src)

    # --- batching and confirms -------------------------------------------------------------

    def _add(self, row: WireRow, packed: bytes, end: int, src: Source) -> None:
        """Batch one record (``packed`` is its row encoded) that ends at ``end`` in ``src``."""
        key = routing_key(row[ROW_SERVICE], row[ROW_LEVEL])
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = Batch(key, time.monotonic())
        batch.rows.append(packed)
        batch.count += 1
        batch.bytes += len(packed)
        marks = src.marks
        if marks and marks[-1].batch is batch:
            marks[-1].end = end
        else:
            marks.append(Mark(end, batch))
            batch.add_source(src)
        if batch.full(self.options.batch_size):
            self._send(batch)

    def _send(self, batch: Batch) -> None:
        del self._batches[batch.key]
        packer = self._packer
        count = batch.count
        body = packer.envelope(batch.rows, count)
        self.stats.records += count
        self.stats.batches += 1
        out = Outgoing(body, batch.key, packer.content_type, token=batch, headers={"x-logctl-count": count})
        self.output.publish(out)
        batch.rows = []  # the body is what travels now; free the rows

    def _send_lingering(self, now: float) -> None:
        linger = self.options.linger_s
        for batch in list(self._batches.values()):
            if now - batch.created >= linger:
                self._send(batch)

    def _on_confirm(self, token: object) -> None:
        assert isinstance(token, Batch)
        token.confirmed = True
        for src in token.sources:
            self._advance(src)

    @staticmethod
    def _advance(src: Source) -> None:
        """Move the source's checkpoint past every leading mark whose records are confirmed."""
        marks = src.marks
        while marks and marks[0].batch.confirmed:
            src.checkpointed = marks.popleft().end

    # --- finding, identifying and retiring files -------------------------------------------

    def _scan(self, initial: bool) -> None:
        """Open files that newly match; note which followed files the patterns no longer reach."""
        seen: set[str] = set()
        now = time.time()
        for path in expand(self._file_patterns, self.options.exclude):
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = f"{st.st_dev}:{st.st_ino}"
            seen.add(key)
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
            if cp.key in seen or cp.key in self.sources or not matches_any(cp.path, self._file_patterns):
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
            self._warn_once(path, f"cannot read {path}: permission denied; skipping it")
            return
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
            os.close(fd)  # replaced between stat and open; the next scan finds the new one
            return
        src = FileSource(path, fd, opened, self.options.service or default_service(path), self.options.max_line_bytes)
        src.from_end = initial and self.options.from_end
        self.sources[src.key] = src
        self.stats.files += 1
        self._identify(src)

    def _identify(self, src: FileSource) -> bool:
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
        self._drain_ready(src)
        src.superseded = True
        self.retired.append(src)
        assert src.prefix is not None
        self._derive[src.key] = src.prefix
        fresh = FileSource(src.name, os.dup(src.fd), os.fstat(src.fd), src.service, self.options.max_line_bytes)
        self.sources[src.key] = fresh
        self._identify(fresh)

    def _retire_moved(self, now: float) -> None:
        """Let go of files rotated away or deleted, once read to the end and quiet for rotate_wait."""
        for key, src in list(self.sources.items()):
            if src.moved_since is None or not src.eof:
                continue
            if now - max(src.moved_since, src.idle_since) < self.options.rotate_wait_s:
                continue
            src.finish()
            self._drain_ready(src)
            del self.sources[key]
            self.retired.append(src)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.notify(message)

    # --- checkpoints -----------------------------------------------------------------------

    def _save(self) -> None:
        store = self.store
        if store is None:
            return
        for src in [*self.retired, *self.sources.values()]:
            if src.prefix is None or src.fingerprint is None or src.superseded:
                continue
            current = store.get(src.key)
            if current is not None and current.offset == src.checkpointed and current.prefix == src.prefix:
                continue
            store.put(
                Checkpoint(
                    src.key, src.name, src.prefix, src.fingerprint, src.fingerprint_len, src.checkpointed, time.time()
                )
            )
        done = [s for s in self.retired if not s.marks]
        for src in done:
            self.retired.remove(src)
            src.close()
        store.save()

    def _final_stats(self) -> ShipStats:
        stats = self.stats
        sources: list[Source] = [*self._all_sources(), *self.retired]
        stats.lines = sum(s.lines for s in sources)
        stats.bytes = sum(s.bytes for s in sources)
        return stats


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


def _connect(broker: Broker, follow: bool, stop: Callable[[], bool], notify: Notify) -> None:
    """Connect; a following ship started while the broker is down waits for it (one notice)."""
    try:
        broker.connect(broker.settings.connect_retries)
    except BrokerUnreachable as exc:
        if not follow:
            raise
        notify(f"{exc}; waiting for it (Ctrl-C to stop)")
        broker.reconnect(stop)
        notify("connected to broker")


def _started_pool(options: ShipOptions) -> BlockPool | None:
    """Parse workers, started, if a file given is big enough for them to be used.

    Its size is a guess at its backlog (a checkpoint may say it was shipped already);
    a wrong guess costs two idle processes, which a file catching up later starts anyway.
    """
    if options.workers <= 0:
        return None
    for path in expand([p for p in options.paths if p != "-"], options.exclude):
        with contextlib.suppress(OSError):
            if os.path.getsize(path) >= MIN_BACKLOG_BYTES:
                pool = BlockPool(options.workers)
                pool.start()
                return pool
    return None


def ship(
    settings: Settings,
    options: ShipOptions,
    stop: Callable[[], bool],
    notify: Notify,
    on_dry_run: Callable[[list[WireRow]], None] | None = None,
) -> ShipStats:
    """Ship ``options.paths`` to the broker (or, with ``on_dry_run``, to that callback)."""
    if on_dry_run is not None:
        echo = on_dry_run
        preview = dataclasses.replace(options, linger_s=0.0)  # every round sends all it read (see EchoOutput)
        return Shipper(preview, lambda confirm: EchoOutput(confirm, echo), None, notify).run(stop)
    check_paths(options.paths)
    has_files = any(p != "-" for p in options.paths)
    with contextlib.ExitStack() as stack:
        if has_files:
            stack.enter_context(state_lock(settings.state_dir))
        store = CheckpointStore(settings.state_dir) if has_files else None
        pool = _started_pool(options)  # its workers start up while ship connects
        if pool is not None:
            stack.callback(pool.close)
        broker = stack.enter_context(contextlib.closing(Broker(settings, notify)))
        _connect(broker, options.follow, stop, notify)
        declare_topology(broker, topology_of(settings))

        def make_output(confirm: Callable[[object], None]) -> Output:
            # mandatory: a batch no queue takes comes back and is held, never counted as shipped.
            return Publisher(
                broker, settings.exchange, confirm, settings.max_in_flight, should_stop=stop, mandatory=True
            )

        return Shipper(options, make_output, store, notify, pool).run(stop)
