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
"""

from __future__ import annotations

import gc
import multiprocessing
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from logctl.codec import RowPacker
from logctl.parsing import LineParser
from logctl.records import Level, routing_key
from logctl.tailer import Source

BLOCK_BYTES = 1 << 20
# Hand a file to the workers only when this much of it is unread: below it, starting
# the pool and the round trips cost more than they save.
MIN_BACKLOG_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class BlockJob:
    """Whole lines of one source (``data`` ends with a newline) starting at offset ``base``."""

    data: bytes
    base: int
    prefix: str
    service: str
    max_line_bytes: int
    serializer: str

    @property
    def end(self) -> int:
        return self.base + len(self.data)


@dataclass(frozen=True, slots=True)
class BlockResult:
    """What a worker made of a block. Offsets are the source's.

    Lines in ``[base, lead_end)`` and ``[rest_start, end)`` are left to the source's parser;
    the records of the lines between are ``rows``, encoded, by routing key in source order.
    """

    lead_end: int
    rest_start: int
    lines: int  # lines in [lead_end, rest_start)
    rows: dict[str, list[bytes]]


def split_blocks(data: bytes, base: int, size: int = BLOCK_BYTES) -> Iterator[tuple[bytes, int]]:
    """Cut ``data`` (whole lines) into pieces of whole lines of about ``size`` bytes."""
    start = 0
    while start < len(data):
        cut = data.find(b"\n", start + size - 1) if start + size < len(data) else len(data) - 1
        cut = len(data) - 1 if cut < 0 else cut
        yield data[start : cut + 1], base + start
        start = cut + 1


def _lead_length(data: bytes, max_line_bytes: int) -> int:
    """Return how many bytes of ``data`` come before its first line that surely starts a record.

    Lines that are too long, not UTF-8 or hold NUL bytes are never taken for that line:
    the source's parser handles them with their flags.
    """
    probe = LineParser("", "")
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


def parse_block(job: BlockJob) -> BlockResult:
    """Parse a block in a worker: the records between its lead and its last record, encoded."""
    lead = _lead_length(job.data, job.max_line_bytes)
    if lead == len(job.data):
        return BlockResult(job.end, job.end, 0, {})
    src = Source(job.service, job.max_line_bytes)
    src.start_parser(job.prefix, job.base + lead)
    src.parse_lines(job.data[lead:-1], job.base + lead)
    assert src.parser is not None
    rest_start = src.parser.pending_start
    assert rest_start is not None  # the block's last record is still open
    packer = RowPacker(job.serializer)
    keys: dict[tuple[str, Level], str] = {}
    rows: dict[str, list[bytes]] = {}
    for record, _end in src.ready:
        lookup = (record.service, record.level)
        key = keys.get(lookup)
        if key is None:
            key = keys[lookup] = routing_key(record.service, record.level)
            rows[key] = []
        rows[key].append(packer.pack(record))
    rest_lines = job.data.count(b"\n", rest_start - job.base)
    return BlockResult(job.base + lead, rest_start, src.lines - rest_lines, rows)


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class BlockPool:
    """Worker processes for ``parse_block``; started on first use, results in order."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def parse(self, jobs: list[BlockJob], poll: Callable[[], None]) -> Iterator[BlockResult]:
        """Yield the result of each job in order, calling ``poll`` while waiting for one."""
        if self._executor is None:
            # spawn, not fork: the main process holds broker sockets and threads.
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker)
        futures: list[Future[BlockResult]] = [self._executor.submit(parse_block, job) for job in jobs]
        try:
            for future in futures:
                while True:
                    try:
                        yield future.result(timeout=0.005)
                        break
                    except TimeoutError:
                        poll()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
