"""ship: read -> parse -> batch -> publish -> confirm -> checkpoint, in one loop.

``files`` finds and identifies the files (rotation, copies, truncation), ``sources``
cuts their bytes (and stdin's) into lines and records with exact offsets, ``parallel``
parses a large backlog in worker processes, ``delivery`` batches the records and hands
confirms back, and each source's ``checkpoint.Progress`` moves only past confirmed
records, so killed at any instant a restart re-reads at most what was unconfirmed (and
the record ids let the sinks drop what arrives twice). The Shipper keeps the loop and
the order of these steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import glob
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from logctl import metrics
from logctl.checkpoint import Checkpoint, CheckpointStore, Mark, Progress, state_lock
from logctl.codec import RowPacker, decode_rows
from logctl.config import Settings
from logctl.delivery import Batcher, Output, Receipt
from logctl.errors import NotFound
from logctl.files import FileTracker, check_paths, default_service
from logctl.parallel import BLOCK_BYTES, MIN_BACKLOG_BYTES, ROUND_SECONDS, BlockJob, BlockPool, BlockResult
from logctl.parsing.explain import Explanation, explain
from logctl.parsing.formats import DETECT, ParseOptions, set_timezone
from logctl.parsing.layout import with_layout
from logctl.processing import NO_PROCESSING, Processing, ProcessingOptions
from logctl.ratelimit import TokenBucket
from logctl.records import ROW_ID, ROW_LEVEL, ROW_SERVICE, WireRow, routing_key, routing_word
from logctl.sources import FileSource, RecordShape, Source, StdinSource
from logctl.transport import Broker, Outgoing, Publisher, TopologyOnce, topology_of
from logctl.watch import Watcher, expand

if TYPE_CHECKING:
    from logctl.intake import IntakeOptions
    from logctl.intake_pool import IntakePool
    from logctl.syslog_listener import SyslogOptions, SyslogServer

Notify = Callable[[str], None]
PROGRESS_INTERVAL_S = 0.25


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
    max_rate: float | None = None  # lines a second at most (a token bucket); parsed in this process then
    parse: ParseOptions = DETECT  # --format (forced for every path) and the user-defined formats
    path_formats: tuple[tuple[str, str], ...] = ()  # (glob, format) from the config, when no --format
    timezone: str = ""  # the zone of stamps that write none; "" = UTC
    processing: ProcessingOptions = NO_PROCESSING  # the edge options for every path (flags, [edge])
    path_processing: tuple[tuple[str, ProcessingOptions], ...] = ()  # (glob, options) of [path_edge."GLOB"]

    def parse_options_for(self, path: str) -> ParseOptions:
        """How ``path`` is parsed: --format, else the first config glob it matches, else detected."""
        if self.parse.format is None:
            for pattern, name in self.path_formats:
                if fnmatch.fnmatch(path, pattern):
                    return dataclasses.replace(self.parse, format=name)
        return self.parse

    def shape_for(self, path: str) -> RecordShape:
        """What shapes the records of ``path`` (``-`` for stdin): one place for every way records are made."""
        return RecordShape(
            service=self.service or default_service(path),
            max_line_bytes=self.max_line_bytes,
            parse=self.parse_options_for(path),
            path=None if path == "-" else os.path.abspath(path),
            timezone=self.timezone,
            processing=self.processing_for(path),
        )

    def processing_for(self, path: str) -> ProcessingOptions:
        """The edge options of ``path``: those for every path, and on top the first config glob it matches."""
        if path != "-":
            for pattern, specific in self.path_processing:
                if fnmatch.fnmatch(path, pattern):
                    return self.processing.under(specific)
        return self.processing


@dataclass(slots=True)
class ShipStats:
    """What a ship run did."""

    lines: int = 0
    records: int = 0
    batches: int = 0
    bytes: int = 0
    files: int = 0
    unconfirmed: int = 0
    http_requests: int = 0  # answered 202 by the intake
    http_records: int = 0  # in those requests, each confirmed
    http_refused: int = 0  # answered 4xx or 5xx
    unfit: int = 0  # lines a forced format (--format, path_formats) did not fit: kept whole, as INFO
    dropped: int = 0  # records the edge options dropped (--min-level, --keep, --drop)
    redacted: int = 0  # records with a value redacted (--redact)
    syslog_messages: int = 0  # taken in by --syslog (each confirmed at a clean stop)
    syslog_udp_dropped: int = 0  # UDP datagrams lost: read while delivery was full, or dropped by the kernel
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds


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


def _source_of(src: Source) -> tuple[str, str] | None:
    """(id prefix, path) of a file source, which its batches carry; None for stdin."""
    path = src.shape.path
    if path is None or src.parser is None:
        return None
    return src.parser.prefix, path


def _row_id(row: WireRow) -> str:
    return str(row[ROW_ID])


class Shipper:
    """Follow (or read once) files and stdin and ship their records."""

    def __init__(
        self,
        options: ShipOptions,
        make_output: Callable[[Callable[[object], None]], Output],
        store: CheckpointStore | None,
        notify: Notify,
        pool: BlockPool | None = None,
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """``pool``: parse workers already started (see ship()); by default, its own.

        ``on_progress(bytes_read)`` is called a few times a second (a progress bar's).
        """
        self.options = options
        self.on_progress = on_progress
        self.store = store
        self.notify = notify
        self._packer = RowPacker(options.serializer)
        self.batcher = Batcher(make_output, self._packer, batch_size=options.batch_size, linger_s=options.linger_s)
        self.output = self.batcher.output
        self.stats = ShipStats()
        self.files = FileTracker(options, store, notify, drain=self._drain_ready, on_begin=self._begin)
        self.stdin: StdinSource | None = None
        self._progress: dict[Source, Progress] = {}  # what of each source is confirmed
        if pool is None and options.workers > 0 and options.max_rate is None:
            pool = BlockPool(options.workers)
        self._pool = pool
        self._reported = (0, 0)  # lines and bytes already counted in the metrics
        self._behind: dict[str, int] = {}  # bytes behind per file, as of the last checkpoint save
        metrics.METRICS.files_behind(lambda: self._behind)
        self._limiter = TokenBucket(options.max_rate) if options.max_rate else None
        self._unfit_seen: dict[Source, int] = {}  # lines reported as unfit so far, per source
        self._stop: Callable[[], bool] = lambda: False
        if "-" in options.paths:
            self.stdin = StdinSource(options.shape_for("-"), options.source_id)
            self._progress[self.stdin] = Progress(0)

    # --- the loop --------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool]) -> ShipStats:
        """Ship until the input ends (no-follow, stdin) or ``stop()``; then flush and checkpoint."""
        self._stop = stop
        check_paths(self.files.patterns)
        watcher = Watcher(self.files.patterns) if self.options.follow and self.files.patterns else None
        if watcher is not None:
            watcher.__enter__()
        try:
            self.files.scan(initial=True)
            self._check_matched()
            self._loop(stop, watcher)
            self._shutdown()
        finally:
            if watcher is not None:
                watcher.__exit__(None, None, None)
            self._save()
            for src in [*self.files.sources.values(), *self.files.retired]:
                src.close()
            if self._pool is not None:
                self._pool.close()
        return self._final_stats()

    def _loop(self, stop: Callable[[], bool], watcher: Watcher | None) -> None:
        opts = self.options
        last_scan = last_save = last_progress = time.monotonic()
        while not stop():
            got = self._read_round()
            now = time.monotonic()
            if self.on_progress is not None and now - last_progress >= PROGRESS_INTERVAL_S:
                self.on_progress(sum(s.bytes for s in [*self._all_sources(), *self.files.retired]))
                last_progress = now
            self.batcher.send_lingering(now)
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
                self.files.scan(initial=False)
                self.files.retire_moved(now)
                last_scan = now
            if not got:
                self._flush_idle_records(now)
                if watcher is not None:
                    watcher.wake.wait(0.05)
                else:
                    time.sleep(0.02)

    def _check_matched(self) -> None:
        """A glob that matches nothing is said; with --no-follow and nothing to read at all, NotFound."""
        empty = [p for p in self.files.patterns if glob.has_magic(p) and not expand([p], self.options.exclude)]
        if empty and not self.options.follow and not self.files.sources and self.stdin is None:
            raise NotFound(f"no file matches {', '.join(empty)}: nothing to ship")
        for pattern in empty:
            wait = "; ship waits for one to appear" if self.options.follow else ""
            self.notify(f"warning: no file matches {pattern} yet{wait}")

    def _input_done(self) -> bool:
        """No-follow: every file read to its end. Follow: only a stdin-only run ends (at EOF)."""
        if self.stdin is not None and not self.stdin.eof:
            return False
        if self.options.follow:
            return self.stdin is not None and not self.files.patterns
        return all(src.eof or src.parser is None for src in self.files.sources.values())

    def _shutdown(self) -> None:
        """Send what is batched, wait (bounded) for confirms.

        A following file keeps its open record and partial line for next time (its
        checkpoint stops before them); stdin cannot be read again, so it ships them now.
        """
        ending: list[Source] = [] if self.options.follow else list(self.files.sources.values())
        if self.stdin is not None:
            ending.append(self.stdin)
        for src in ending:
            src.finish()
            self._drain_ready(src)
            if src.parser is not None and src.parser.unfit > self._unfit_seen.get(src, 0):
                self._report_unfit(src)
        self.batcher.send_all()
        if not self.output.wait_confirmed(self.options.shutdown_timeout_s):
            self.stats.unconfirmed = self.output.in_flight
            notice = [f"{self.output.in_flight} batch(es) still unconfirmed after {self.options.shutdown_timeout_s:g}s"]
            if self.files.patterns:
                notice.append("files will be read from their checkpoints again next time")
            if self.stdin is not None:
                notice.append("stdin's lines are stored only if it is shipped again under the same --source-id")
            self.notify("; ".join(notice))

    # --- reading ---------------------------------------------------------------------------

    def _all_sources(self) -> list[Source]:
        sources: list[Source] = list(self.files.sources.values())
        if self.stdin is not None:
            sources.append(self.stdin)
        return sources

    def _read_round(self) -> bool:
        got = False
        chunk = self.options.read_chunk
        limiter = self._limiter
        if limiter is not None:  # reads of about a tenth of a second's lines (at ~100 bytes a line)
            chunk = min(chunk, max(512, int(limiter.rate * 10)))
        for src in self._all_sources():
            lines_before = src.lines
            if src.parser is None and isinstance(src, FileSource) and not self.files.identify(src):
                continue
            try:
                n = self._read_blocks(src) if self._wants_blocks(src) else src.read(chunk)
            except OSError as exc:
                self.files.warn_once(src.name, f"cannot read {src.name}: {exc.strerror}")
                continue
            if n:
                got = True
                src.idle_since = time.monotonic()
            if src.eof and not self.options.follow and isinstance(src, FileSource):
                src.finish()
            if src.ready:
                self._drain_ready(src)
            if src.parser is not None and src.parser.unfit > self._unfit_seen.get(src, 0):
                self._report_unfit(src)
            if limiter is not None and src.lines > lines_before:
                self._pace(limiter.delay(src.lines - lines_before))
        return got

    def _report_unfit(self, src: Source) -> None:
        """Lines the forced format did not fit: counted, and the first of each file named once."""
        parser = src.parser
        assert parser is not None
        seen = self._unfit_seen.get(src, 0)
        metrics.METRICS.unfit(parser.unfit - seen)
        self._unfit_seen[src] = parser.unfit
        if seen == 0 and parser.first_unfit is not None:
            offset, line = parser.first_unfit
            shown = line if len(line) <= 120 else line[:117] + "..."
            self.notify(
                f"{src.name}: a line at byte {offset} does not fit format {src.shape.parse.format} "
                f"and is kept whole as an INFO record (lines like it are counted in unfit=): {shown!r}"
            )

    def _pace(self, seconds: float) -> None:
        """Wait for the rate limit, sending lingering batches and taking confirms meanwhile."""
        until = time.monotonic() + seconds
        while not self._stop():
            now = time.monotonic()
            if now >= until:
                return
            self.batcher.send_lingering(now)
            self.output.poll()
            time.sleep(min(0.05, until - now))

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
                yield BlockJob(block, base, prefix, src.shape, opts.serializer)
                base += len(block)

        for job, result in self._pool.parse(jobs(), self.output.poll):
            self._apply_block(src, job, result)
        src.pos = start + len(partial) + read
        src.take(tail)  # a partial last line waits for its newline, as usual
        return read

    def _apply_block(self, src: Source, job: BlockJob, result: BlockResult) -> None:
        """Take a parsed block in: its ends through the source's parser, its middle as rows."""
        src.bytes += len(job.data)
        if result.dropped or result.redacted:
            self._count_processed(result.dropped, result.redacted)
        lead = result.lead_end - job.base
        if lead:
            src.parse_lines(job.data[: lead - 1], job.base)  # may continue the record open before
        if result.lead_end < job.end:
            src.flush_record()  # the block's first record starts here, so the open one is complete
            self._drain_ready(src)
            self._add_rows(src, result)
            src.lines += result.lines
            if result.unfit:
                assert src.parser is not None
                src.parser.add_unfit(result.unfit, result.first_unfit)
            rest = result.rest_start - job.base
            src.parse_lines(job.data[rest:-1], result.rest_start)  # reopen the block's last record
        self._drain_ready(src)

    def _add_rows(self, src: Source, result: BlockResult) -> None:
        """Batch a block's encoded rows; the source's checkpoint passes them when all are confirmed."""
        progress = self._progress[src]
        touched = self.batcher.add_rows(result.rows, progress, _source_of(src))
        progress.marks.append(Mark(result.rest_start, Receipt(touched)))
        progress.advance()  # in case every batch was confirmed while the rest were still being sent

    def _drain_ready(self, src: Source) -> None:
        """Batch the records a source completed (``src.ready``), marking how far each batch reaches."""
        ready = src.ready
        if not ready:
            return
        progress = self._progress[src]
        if src.processing is not None:
            ready = self._processed(src.processing, ready, progress)
            src.ready.clear()
            if not ready:
                progress.advance()
                return
        rows = [row for row, _end in ready]
        keys = [routing_key(row[ROW_SERVICE], row[ROW_LEVEL]) for row in rows]
        marks = progress.marks
        went = self.batcher.fill(keys, self._packer.pack_parsed(rows), progress, _source_of(src))
        for batch, (_row, end) in zip(went, ready, strict=True):
            if marks and marks[-1].batch is batch:
                marks[-1].end = end
            else:
                marks.append(Mark(end, batch))
        progress.advance()  # batches confirmed as they were sent (a dry run) are passed at once
        ready.clear()

    def _processed(
        self, processing: Processing, ready: list[tuple[WireRow, int]], progress: Progress
    ) -> list[tuple[WireRow, int]]:
        """The records the edge options keep, processed. A dropped record's lines still move the
        checkpoint: they are passed once the record before them is confirmed (at once if it is)."""
        dropped, redacted = processing.dropped, processing.redacted
        kept: list[tuple[WireRow, int]] = []
        for pair in ready:
            if processing.apply(pair[0]):
                kept.append(pair)
            elif kept:
                kept[-1] = (kept[-1][0], pair[1])
            elif progress.marks:
                progress.marks[-1].end = pair[1]
            else:
                progress.checkpointed = pair[1]
        self._count_processed(processing.dropped - dropped, processing.redacted - redacted)
        return kept

    def _count_processed(self, dropped: int, redacted: int) -> None:
        self.stats.dropped += dropped
        self.stats.redacted += redacted
        if dropped:
            metrics.METRICS.dropped("ship", dropped)

    def _flush_idle_records(self, now: float) -> None:
        """Complete multi-line records whose source has been quiet for the multi-line timeout."""
        for src in self._all_sources():
            if src.has_open_record and now - src.idle_since >= self.options.multiline_timeout_s:
                src.flush_record()
                self._drain_ready(src)

    def _begin(self, src: FileSource, offset: int) -> None:
        """A file starts being read at ``offset``: its checkpoint stands there until records are confirmed."""
        self._progress[src] = Progress(offset)

    def _checkpointed(self, src: Source) -> int:
        return self._progress[src].checkpointed

    def checkpoints(self) -> dict[str, int]:
        """Each file's confirmed offset now (path -> bytes), as the next save would store it."""
        return {
            src.name: self._checkpointed(src)
            for src in [*self.files.retired, *self.files.sources.values()]
            if src in self._progress and not src.superseded
        }

    # --- checkpoints -----------------------------------------------------------------------

    def _report(self) -> None:
        """The metrics' lines and bytes read since the last report, and each file's bytes behind."""
        sources: list[Source] = [*self._all_sources(), *self.files.retired]
        lines, nbytes = sum(s.lines for s in sources), sum(s.bytes for s in sources)
        metrics.METRICS.received("ship", lines - self._reported[0], nbytes - self._reported[1])
        self._reported = (lines, nbytes)
        behind = {}
        for src in self.files.sources.values():
            with contextlib.suppress(OSError):
                if src in self._progress:
                    behind[src.name] = max(src.size() - self._checkpointed(src), 0)
        self._behind = behind

    def _save(self) -> None:
        self._report()
        store = self.store
        if store is None:
            return
        for src in [*self.files.retired, *self.files.sources.values()]:
            if src.prefix is None or src.fingerprint is None or src.superseded:
                continue
            current = store.get(src.key)
            offset = self._checkpointed(src)
            complete = src.compressed and offset >= src.size()
            if current is not None and (current.offset, current.prefix, current.complete) == (
                offset,
                src.prefix,
                complete,
            ):
                continue
            store.put(
                Checkpoint(
                    src.key, src.name, src.prefix, src.fingerprint, src.fingerprint_len, offset, time.time(), complete
                )
            )
        done = [s for s in self.files.retired if self._progress.get(s) is None or self._progress[s].settled]
        for src in done:
            self.files.retired.remove(src)
            self._progress.pop(src, None)
            src.close()
        store.save()

    def _final_stats(self) -> ShipStats:
        stats = self.stats
        stats.records = self.batcher.records_sent
        stats.batches = self.batcher.batches_sent
        stats.files = self.files.opened
        sources: list[Source] = [*self._all_sources(), *self.files.retired]
        stats.lines = sum(s.lines for s in sources)
        stats.unfit = sum(s.parser.unfit for s in sources if s.parser is not None)
        stats.bytes = sum(s.bytes for s in sources)
        return stats


def _started_pool(options: ShipOptions) -> BlockPool | None:
    """Parse workers, started, if a file given is big enough for them to be used.

    Its size is a guess at its backlog (a checkpoint may say it was shipped already);
    a wrong guess costs two idle processes, which a file catching up later starts anyway.
    """
    if options.workers <= 0 or options.max_rate is not None:
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
    *,
    on_dry_run: Callable[[list[WireRow]], None] | None = None,
    intake: IntakeOptions | None = None,
    syslog: SyslogOptions | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ShipStats:
    """Ship ``options.paths`` to the broker (or, with ``on_dry_run``, to that callback).

    With ``intake`` an HTTP intake runs beside them (alone when there are no paths) until
    ``stop()``; it has a connection and a delivery thread of its own.
    """
    set_timezone(options.timezone)  # zone-less stamps (parse workers are told in each job)
    if on_dry_run is not None:
        echo = on_dry_run
        preview = dataclasses.replace(options, linger_s=0.0)  # every round sends all it read (see EchoOutput)
        return Shipper(preview, lambda confirm: EchoOutput(confirm, echo), None, notify).run(stop)
    # One declaration for the connections of files, intake and syslog; with files, a marker
    # in the state dir lets the next ship finish a declaration a kill cut off.
    has_files = any(p != "-" for p in options.paths)
    topology = TopologyOnce(settings.state_dir / f"declaring-{routing_word(settings.exchange)}" if has_files else None)
    with contextlib.ExitStack() as stack:
        if intake is not None:
            from logctl.intake_pool import IntakePool  # the HTTP stack loads only for --listen

            server = IntakePool(
                settings, intake, stop, notify, topology, options.timezone, options.shutdown_timeout_s
            ).start()
            stack.callback(_close_intake, server, options.shutdown_timeout_s, notify)
        if syslog is not None:
            from logctl.syslog_listener import SyslogServer  # asyncio and ssl load only for --syslog

            listener = SyslogServer(settings, syslog, stop, notify, topology).start()
            stack.callback(_close_syslog, listener, options.shutdown_timeout_s, notify)
        stats = ShipStats()
        if options.paths:
            stats = _ship_paths(settings, options, stop, notify, on_progress, topology)
        else:
            while not stop():
                time.sleep(0.2)
        if intake is not None or syslog is not None:
            stack.close()  # the intake's requests in hand are answered first, syslog's messages confirmed
        if syslog is not None:
            stats.syslog_messages = listener.stats.messages
            stats.syslog_udp_dropped = listener.stats.udp_overflow + listener.stats.kernel_drops
            stats.dropped += listener.stats.dropped
            if listener.processing is not None:
                stats.redacted += listener.processing.redacted
        if intake is not None:
            counts = server.counts
            stats.http_requests, stats.http_records, stats.http_refused = (
                counts.requests,
                counts.records,
                counts.refused,
            )
            stats.dropped += counts.dropped
            stats.redacted += counts.redacted
        return stats


def explain_head(options: ShipOptions, path: str, head: bytes) -> list[Explanation]:
    """``ship --explain``: the first lines of ``path`` (``head``, whole lines) parsed as ship parses them.

    They go through a source made from the same options as ship's own (format, service,
    line limit, zone), whose parser keeps its decisions for the explanation.
    """
    set_timezone(options.timezone)
    shape = options.shape_for(path)
    src = Source(replace(shape, parse=with_layout(shape.parse, head)) if path != "-" else shape)
    src.start_parser(EXPLAIN_PREFIX, 0)
    assert src.parser is not None
    src.parser.record_decisions()
    src.pos = len(head)
    src.take(head)
    src.finish()
    lines, offset = [], 0
    for raw in head.split(b"\n")[: head.count(b"\n") + (not head.endswith(b"\n"))]:
        lines.append((offset, raw.rstrip(b"\r").decode("utf-8", "replace")))
        offset += len(raw) + 1
    rows = [row for row, _end in src.ready]
    processing = src.processing
    dropped = {}
    if processing is not None:
        dropped = {row[ROW_ID]: why for row in rows if (why := processing.why_dropped(row)) is not None}
    return explain(src.parser, rows, lines, dropped)


EXPLAIN_PREFIX = "0000000000000000"


def _close_syslog(listener: SyslogServer, timeout: float, notify: Notify) -> None:
    if not listener.close(timeout):
        notify(f"syslog's last records were still unconfirmed after {timeout:g}s: they may be lost")
    stats = listener.stats
    if stats.udp_overflow or stats.kernel_drops:
        notify(
            f"syslog over UDP lost {stats.udp_overflow + stats.kernel_drops} datagram(s): "
            f"{stats.kernel_drops} dropped by the kernel (its buffer was full), "
            f"{stats.udp_overflow} read while delivery was full"
        )


def _close_intake(server: IntakePool, timeout: float, notify: Notify) -> None:
    if not server.close(timeout):
        notify(f"the intake's last records were still unconfirmed after {timeout:g}s; their requests got no 202")


def _ship_paths(
    settings: Settings,
    options: ShipOptions,
    stop: Callable[[], bool],
    notify: Notify,
    on_progress: Callable[[int], None] | None,
    topology: TopologyOnce,
) -> ShipStats:
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
        broker.connect(settings.connect_retries, wait=options.follow, should_stop=stop)
        topology.declare(broker, topology_of(settings))

        def make_output(confirm: Callable[[object], None]) -> Output:
            # mandatory: a batch no queue takes comes back and is held, never counted as shipped.
            publisher = Publisher(
                broker, settings.exchange, confirm, settings.max_in_flight, should_stop=stop, mandatory=True
            )
            metrics.METRICS.watch_paused(
                {
                    "broker_down": lambda: not broker.connected,
                    "blocked": lambda: broker.blocked,
                    "backpressure": lambda: publisher.in_flight >= publisher.max_in_flight,
                }
            )
            return publisher

        return Shipper(options, make_output, store, notify, pool, on_progress=on_progress).run(stop)
