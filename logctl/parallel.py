"""Parse a large backlog of a file in worker processes, block by block, in order.

One core parses about 100k lines/s. When ship finds a file far behind (a first run,
``--no-follow``, catching up after an outage), it reads several blocks of whole lines at
once; worker processes parse them and encode their records as wire rows while the main
process batches, publishes and tracks confirms.

The records are exactly those of a sequential parse. A line that parses as the start of
a record always starts one, whatever came before it. So a worker parses its block from
the first such line (the lines before it may continue the record open before the
block) up to the start of the block's last record (which the next block may continue).
Both ends are left to the source's own LineParser in the main process, which knows
what came before.

Blocks and their rows travel through shared memory, one buffer per job in flight: a
pipe would copy each megabyte four times and wake the reader sixteen times on the way
(7% of ship's CPU). The few that do not fit go through the pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import multiprocessing
import os
import signal
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from itertools import accumulate
from multiprocessing import shared_memory
from operator import itemgetter

from logctl.codec import RowPacker
from logctl.parsing import LineParser
from logctl.parsing.formats import DETECT, ParseOptions, set_timezone
from logctl.records import ROW_LEVEL, ROW_SERVICE, routing_key
from logctl.sources import RecordShape, Source

BLOCK_BYTES = 1 << 20
_SLICE_BYTES = 64 << 10  # what a worker parses between packing records
# How long ship keeps the pool busy with one file before its loop gets a turn (to save
# checkpoints, send other files' lingering batches, look for new files; a stop is seen
# at every block). A round ends by draining the pool, and while the last block is parsed
# the other worker idles: at 0.5 s that cost 3-4% of ship's rate (A/B, 6 runs each).
# At 1 s, during a catch-up another file's records wait at most about a second more.
ROUND_SECONDS = 1.0
# Hand a file to the workers only when this much of it is unread: below it, starting
# the pool and the round trips cost more than they save.
MIN_BACKLOG_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class BlockJob:
    """Whole lines of one source (``data`` ends with a newline) starting at offset ``base``."""

    data: bytes
    base: int
    prefix: str
    shape: RecordShape  # the source's, so that a worker makes the records its parser would
    serializer: str

    @property
    def end(self) -> int:
        return self.base + len(self.data)


@dataclass(frozen=True, slots=True)
class BlockResult:
    """What a worker made of a block. Offsets are the source's.

    Lines in ``[base, lead_end)`` and ``[rest_start, end)`` are left to the source's parser;
    the records of the lines between are ``rows``: by routing key, the encoded rows one
    after another in source order, and where each row ends (one buffer each, cheap to
    pass between processes).
    """

    lead_end: int
    rest_start: int
    lines: int  # lines in [lead_end, rest_start)
    rows: dict[str, tuple[bytes, array[int]]]
    unfit: int = 0  # lines in [lead_end, rest_start) that a forced format did not fit
    first_unfit: tuple[int, str] | None = None  # the first of them: (offset, line)
    dropped: int = 0  # records of those lines the edge options dropped
    redacted: int = 0  # and records with a value redacted


def _lead_length(data: bytes, max_line_bytes: int, options: ParseOptions = DETECT) -> int:
    """Return how many bytes of ``data`` come before its first line that surely starts a record.

    Lines that are too long, not UTF-8 or hold NUL bytes are never taken for that line:
    the source's parser handles them with their flags.
    """
    probe = LineParser("", "", options=options)
    pos = 0
    while pos < len(data):
        newline = data.index(b"\n", pos)
        if newline - pos <= max_line_bytes:
            try:
                line = data[pos:newline].decode("utf-8")
            except UnicodeDecodeError:
                line = ""
            if line.endswith("\r"):
                line = line[:-1]
            if "\x00" not in line and probe.starts_record(line):
                return pos
        pos = newline + 1
    return len(data)


_zone_in_use = [""]  # this worker's --timezone, set by the first job that names another


def _use_timezone(name: str) -> None:
    if name != _zone_in_use[0]:
        set_timezone(name)
        _zone_in_use[0] = name


def parse_block(job: BlockJob) -> BlockResult:
    """Parse a block in a worker: the records between its lead and its last record, encoded."""
    data = job.data
    _use_timezone(job.shape.timezone)
    lead = _lead_length(data, job.shape.max_line_bytes, job.shape.parse)
    if lead == len(data):
        return BlockResult(job.end, job.end, 0, {})
    src = Source(job.shape)
    src.start_parser(job.prefix, job.base + lead)
    packer = RowPacker(job.serializer)
    key_of = itemgetter(ROW_SERVICE, ROW_LEVEL)
    # Encoded rows by routing key, in source order. Each (service, level) pair is also a
    # key of ``parts``, aliasing its routing key's list: the routing key is worked out
    # once per pair, not per record (pairs that make the same routing key share a list).
    parts: dict[object, list[bytes]] = {}
    # A slice at a time, packing as it goes: only a slice's records are ever held as objects.
    start = lead
    while start < len(data):
        cut = data.find(b"\n", start + _SLICE_BYTES - 1)
        cut = len(data) - 1 if cut < 0 else cut
        src.parse_lines(data[start:cut], job.base + start)
        start = cut + 1
        records = [row for row, _end in src.ready]
        src.ready.clear()
        if src.processing is not None:
            records = src.processing.kept(records)
        for pair, packed in zip(map(key_of, records), packer.pack_parsed(records), strict=True):
            same = parts.get(pair)
            if same is None:
                key = routing_key(*pair)
                same = parts.get(key)
                if same is None:
                    same = parts[key] = []
                parts[pair] = same
            same.append(packed)
    assert src.parser is not None
    rest_start = src.parser.pending_start
    assert rest_start is not None  # the block's last record is still open
    rest_lines = data.count(b"\n", rest_start - job.base)
    packed_rows = {
        key: (b"".join(rows), array("Q", accumulate(map(len, rows))))
        for key, rows in parts.items()
        if isinstance(key, str)
    }
    parser = src.parser
    # The block's last record is parsed again by the source's own parser: not counted here.
    unfit = parser.unfit - (parser.last_unfit_start == rest_start)
    first = parser.first_unfit if unfit else None
    processed = src.processing
    dropped, redacted = (processed.dropped, processed.redacted) if processed is not None else (0, 0)
    return BlockResult(
        job.base + lead, rest_start, src.lines - rest_lines, packed_rows, unfit, first, dropped, redacted
    )


_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """End this worker when ship ends, however it ends (``kill -9`` included).

    A worker holds both ends of its job queue, so it would never see the queue close;
    the kernel signals it instead (Linux's parent-death signal).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # ship died before the line above took effect
        os._exit(0)


def _init_worker(parent: int) -> None:
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


# A shared buffer per job in flight: the block in, then its rows out. A block is about
# BLOCK_BYTES and its rows about 1.4 times that; whatever does not fit takes the pipe.
_BUFFER_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class _SharedJob:
    """A job whose block is the first ``length`` bytes of the shared buffer ``buffer``."""

    buffer: str
    length: int
    job: BlockJob  # its data left empty


@dataclass(frozen=True, slots=True)
class _SharedRows:
    """A block's result with its rows left in the job's shared buffer: by routing key,
    where they start and end in it, and where each row ends (as in BlockResult.rows)."""

    result: BlockResult  # its rows left empty
    spans: dict[str, tuple[int, int, array[int]]]


# A job in flight: the job, its shared buffer (None if it took the pipe), its future.
_InFlight = tuple[BlockJob, shared_memory.SharedMemory | None, Future[BlockResult | _SharedRows]]

_attached: dict[str, shared_memory.SharedMemory] = {}  # a worker's view of each buffer


def _parse_shared(task: _SharedJob) -> BlockResult | _SharedRows:
    """parse_block in a worker, for a block in a shared buffer; the rows go back in it if they fit."""
    buffer = _attached.get(task.buffer)
    if buffer is None:
        buffer = _attached[task.buffer] = shared_memory.SharedMemory(task.buffer)
    view = buffer.buf
    assert view is not None
    result = parse_block(dataclasses.replace(task.job, data=bytes(view[: task.length])))
    if sum(len(rows) for rows, _ends in result.rows.values()) > len(view):
        return result
    spans, pos = {}, 0
    for key, (rows, ends) in result.rows.items():
        view[pos : pos + len(rows)] = rows
        spans[key] = (pos, pos + len(rows), ends)
        pos += len(rows)
    return _SharedRows(dataclasses.replace(result, rows={}), spans)


def _started() -> None:
    """A job that only makes a worker start (and import this module)."""


class BlockPool:
    """Worker processes for ``parse_block``; started on first use, results in order."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._buffers: list[shared_memory.SharedMemory] = []
        self._free: list[shared_memory.SharedMemory] = []

    def parse(self, jobs: Iterable[BlockJob], poll: Callable[[], None]) -> Iterator[tuple[BlockJob, BlockResult]]:
        """Yield each job with its result, in order, calling ``poll`` while waiting for one.

        Two jobs per worker are kept in flight, topped up before a result is yielded, so
        the workers parse while the caller takes a result in.
        """
        executor = self.start()
        queued = iter(jobs)
        in_flight: deque[_InFlight] = deque()
        try:
            while True:
                while len(in_flight) < 2 * self.workers and (job := next(queued, None)) is not None:
                    in_flight.append(self._submit(executor, job))
                if not in_flight:
                    return
                head, buffer, future = in_flight.popleft()
                while True:
                    try:
                        outcome = future.result(timeout=0.005)
                        break
                    except TimeoutError:
                        poll()
                result = self._taken(outcome, buffer)
                if (job := next(queued, None)) is not None:
                    in_flight.append(self._submit(executor, job))
                yield head, result
        finally:
            self._abandon(in_flight)

    def start(self) -> ProcessPoolExecutor:
        """Start the workers, if not yet started; parse() starts them too.

        Ship calls this before it connects when a file is far behind: the workers'
        start-up (an interpreter and the parser's imports each, about 0.1 s) then
        overlaps the connection instead of delaying the first block.
        """
        if self._executor is None:
            # spawn, not fork: the main process holds broker sockets and threads.
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)
            )
            # Registered with multiprocessing's resource tracker, which unlinks them if
            # ship dies without close() (kill -9).
            self._buffers = [
                shared_memory.SharedMemory(create=True, size=_BUFFER_BYTES) for _ in range(2 * self.workers)
            ]
            self._free = list(self._buffers)
            for _ in range(self.workers):  # the executor starts a process per job it cannot give an idle one
                self._executor.submit(_started)
        return self._executor

    def _submit(self, executor: ProcessPoolExecutor, job: BlockJob) -> _InFlight:
        if len(job.data) > _BUFFER_BYTES or not self._free:
            return job, None, executor.submit(parse_block, job)
        buffer = self._free.pop()
        view = buffer.buf
        assert view is not None
        view[: len(job.data)] = job.data
        task = _SharedJob(buffer.name, len(job.data), dataclasses.replace(job, data=b""))
        return job, buffer, executor.submit(_parse_shared, task)

    def _taken(self, outcome: BlockResult | _SharedRows, buffer: shared_memory.SharedMemory | None) -> BlockResult:
        """The result of a finished job, its rows copied out of its buffer, which is free again."""
        if isinstance(outcome, _SharedRows):
            assert buffer is not None and buffer.buf is not None
            view = buffer.buf
            rows = {key: (bytes(view[start:end]), ends) for key, (start, end, ends) in outcome.spans.items()}
            result = dataclasses.replace(outcome.result, rows=rows)
        else:
            result = outcome
        if buffer is not None:
            self._free.append(buffer)
        return result

    def _abandon(self, in_flight: Iterable[_InFlight]) -> None:
        """Cancel the jobs still queued; wait for those running, whose workers still write
        in their buffers, before the buffers are used again."""
        running = [future for _job, _buffer, future in in_flight if not future.cancel()]
        wait(running)
        self._free.extend(buffer for _job, buffer, _future in in_flight if buffer is not None)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        for buffer in self._buffers:
            buffer.close()
            buffer.unlink()
        self._buffers, self._free = [], []
