"""``LogctlHandler``: a ``logging.Handler`` that ships an application's records itself.

    import logging
    from logctl.handler import LogctlHandler

    logging.getLogger().addHandler(LogctlHandler(service="checkout"))

``emit`` never blocks the application: it turns the record into a logctl record and puts
it into a bounded buffer (a lock held for a few microseconds). A thread of the handler's
own moves the buffer into the delivery unit (``delivery.DeliveryThread``), which batches,
publishes with confirms and reconnects, on a connection of its own. When the buffer is
full (the broker is gone, or slower than the application) ``overflow`` decides, and
every record not shipped is counted: ``drop-newest`` (the default) refuses the new
record, ``drop-oldest`` makes room, ``spill`` appends it as a JSON line to
``spill_path``, a file ``logctl ship`` can follow. At exit (``logging.shutdown``) the
handler flushes within ``flush_timeout``. It is safe across ``fork``: a child starts its
own thread and connection at its first record, and ships only its own records.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from logctl.codec import RowPacker
from logctl.config import Settings, from_environment
from logctl.delivery import DeliveryThread, Output
from logctl.parsing.fields import trace_from_value
from logctl.records import Level, WireRow, id_format
from logctl.transport import Broker, Publisher, declare_topology, preload, topology_of

OVERFLOW_POLICIES = ("drop-newest", "drop-oldest", "spill")
FORK_WAIT_S = 2.0  # how long a fork waits for the handler's first connection attempt to end
# What every LogRecord has; anything else in its __dict__ came from ``extra=`` and goes to attrs.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_TRACE_KEYS = ("trace_id", "traceId", "trace", "otelTraceID")


def level_of(levelno: int) -> Level:
    """logging's numeric level as logctl's (below DEBUG is TRACE, CRITICAL is FATAL)."""
    if levelno >= logging.CRITICAL:
        return Level.FATAL
    if levelno >= logging.ERROR:
        return Level.ERROR
    if levelno >= logging.WARNING:
        return Level.WARN
    if levelno >= logging.INFO:
        return Level.INFO
    if levelno >= logging.DEBUG:
        return Level.DEBUG
    return Level.TRACE


def _otel_trace_id() -> str | None:
    """The active OpenTelemetry span's trace id, when OpenTelemetry is installed and a span is."""
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return None
    context = otel.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


class LogctlHandler(logging.Handler):
    """Ship log records through RabbitMQ, confirmed, without ever blocking ``emit``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        exchange: str | None = None,
        service: str | None = None,
        capacity: int = 10_000,
        overflow: str = "drop-newest",
        spill_path: str | os.PathLike[str] | None = None,
        flush_timeout: float = 5.0,
        level: int = logging.NOTSET,
        settings: Settings | None = None,
    ) -> None:
        """``url``/``exchange`` as for the commands (else ``LOGCTL_URL``, the config file, the default)."""
        super().__init__(level)
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, not {overflow!r}")
        if overflow == "spill" and spill_path is None:
            raise ValueError("overflow='spill' needs spill_path")
        self.settings = settings or from_environment(url=url, exchange=exchange)
        self.service = service or Path(sys.argv[0] or "python").stem or "python"
        self.capacity = capacity
        self.overflow = overflow
        self.spill_path = Path(spill_path) if spill_path is not None else None
        self.flush_timeout = flush_timeout
        # Every record emit took is in exactly one of these (under the buffer lock):
        # submitted == delivered + dropped + spilled + pending.
        self.submitted = 0  # taken by emit
        self.delivered = 0  # confirmed by the broker
        self.dropped = 0  # not shipped: refused or pushed out of a full buffer, or left at close
        self.spilled = 0  # written to spill_path instead
        self._buffer: deque[WireRow] = deque()
        self._buffer_lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._pending: dict[Future[None], list[WireRow]] = {}  # handed to the delivery unit, unconfirmed
        self._unreachable: tuple[float, str] | None = None  # since when, and why, the broker is away
        self._feeder: threading.Thread | None = None
        self._delivery: DeliveryThread | None = None
        self._broker: Broker | None = None
        self._ids = id_format(f"py-{os.urandom(6).hex()}")
        self._serial = 0
        self._flush_failed_at = float("-inf")
        # A fork while our thread makes its first connection (which imports lazily) would leave
        # the child a held import lock: import what we can now, and let a fork wait for the rest.
        preload()
        self._not_connecting = threading.Event()
        self._not_connecting.set()
        ref = weakref.ref(self)
        os.register_at_fork(before=lambda: _before_fork(ref), after_in_child=lambda: _after_fork(ref))

    # --- logging.Handler --------------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        """Buffer the record for shipping; never waits for the broker."""
        try:
            row = self._row(record)
        except Exception:  # noqa: BLE001 - logging's contract: a bad record is reported, not raised
            self.handleError(record)
            return
        with self._buffer_lock:
            if self._feeder is None:
                self._start()  # the first record, or one after close (dictConfig closes every handler)
            self.submitted += 1
            if len(self._buffer) < self.capacity:
                self._buffer.append(row)
            elif self.overflow == "drop-oldest":
                self._buffer.popleft()
                self._buffer.append(row)
                self.dropped += 1
            elif self.overflow == "spill":
                self._spill(row)
            else:
                self.dropped += 1
        self._wake.set()

    @property
    def pending(self) -> int:
        """Records taken and not yet confirmed, dropped or spilled: buffered or on their way."""
        with self._buffer_lock:
            return len(self._buffer) + sum(len(rows) for rows in self._pending.values())

    def flush(self) -> None:
        """Wait up to ``flush_timeout`` until every buffered record is confirmed (logging.shutdown calls it)."""
        if not self.drain():
            self._flush_failed_at = time.monotonic()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait (up to ``timeout``, else ``flush_timeout``) until every buffered record is confirmed."""
        deadline = time.monotonic() + (self.flush_timeout if timeout is None else timeout)
        if self._feeder is None:
            return not self._buffer
        while self._buffer and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        with self._buffer_lock:
            pending = list(self._pending)
        for future in pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                future.result(remaining)
            except Exception:  # noqa: BLE001 - a failed delivery: not flushed
                return False
        return not self._buffer

    def close(self) -> None:
        """Flush within ``flush_timeout``, then stop; what is still unconfirmed is spilled or dropped.

        It says on stderr how many records were not delivered and why (the broker could not
        be reached since when, or did not confirm in time), and where they went.

        As with logging's file handlers, a record emitted after close starts it again:
        ``logging.config.dictConfig`` closes every existing handler (uvicorn calls it).
        """
        if not self._closing.is_set():
            # logging.shutdown flushes, then closes: a flush that just timed out is not waited out twice.
            failed_just_now = time.monotonic() - self._flush_failed_at < 1.0
            flushed = self.drain(0 if failed_just_now else None)
            self._closing.set()
            self._wake.set()
            if self._feeder is not None:
                self._feeder.join(self.flush_timeout)
            if self._delivery is not None:
                self._delivery.close(0 if not flushed else self.flush_timeout)
            if self._broker is not None:
                self._broker.close()
            where = self._broker.where if self._broker is not None else "?"
            self._settle_leftovers(where)
            self._feeder = self._delivery = self._broker = None  # a later record starts them again
        super().close()

    def _settle_leftovers(self, where: str) -> None:
        """At close: spill (or drop) what was never confirmed, and say so, with the reason."""
        with self._buffer_lock:
            left = list(self._buffer)
            for rows in self._pending.values():
                left.extend(rows)
            self._buffer.clear()
            self._pending.clear()
            if not left:
                return
            spilled_before = self.spilled
            if self.overflow == "spill":
                for row in left:
                    self._spill(row)  # counts spilled, or dropped if the file cannot be written
            else:
                self.dropped += len(left)
            spilled = self.spilled - spilled_before
            submitted = self.submitted
        went = f"spilled {spilled} to {self.spill_path}" if spilled else "dropped"
        if spilled and spilled < len(left):
            went += f", dropped {len(left) - spilled} (the spill file could not be written)"
        sys.stderr.write(
            f"logctl handler: {len(left)} of {submitted} record(s) not delivered ({self._why(where)}); {went}\n"
        )

    def _why(self, where: str) -> str:
        if self._unreachable is not None:
            since, reason = self._unreachable
            reason = reason.removeprefix(f"cannot reach broker at {where}: ")
            stamp = datetime.fromtimestamp(since, UTC).strftime("%H:%M:%S UTC")
            return f"the broker at {where} could not be reached since {stamp}: {reason}"
        return f"not confirmed by the broker at {where} within {self.flush_timeout:g}s"

    def _broker_notice(self, message: str) -> None:
        """The Broker's notices: remember since when, and why, it cannot be reached."""
        if message.startswith("connected to broker"):
            self._unreachable = None
        elif self._unreachable is None and not message.startswith("connecting to"):
            self._unreachable = (time.time(), message.removesuffix("; waiting for it (Ctrl-C to stop)"))

    # --- records ----------------------------------------------------------------------------

    def _row(self, record: logging.LogRecord) -> WireRow:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{''.join(traceback.format_exception(*record.exc_info)).rstrip()}"
        elif record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{record.stack_info}"
        attrs: dict[str, Any] = {"logger": record.name}
        trace_id = None
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if trace_id is None and key in _TRACE_KEYS:
                trace_id = trace_from_value(key, value)
                if trace_id is not None:
                    continue
            attrs[key] = value
        self._serial += 1
        return [
            self._ids % self._serial,
            int(record.created * 1_000_000),
            level_of(record.levelno),
            str(attrs.pop("service", self.service)),
            message,
            trace_id or _otel_trace_id(),
            attrs,
        ]

    def _spill(self, row: WireRow) -> None:
        """Append a record the buffer has no room for to the spill file (JSON, as --dry-run prints)."""
        assert self.spill_path is not None
        record = {
            "id": row[0],
            "timestamp": datetime.fromtimestamp(row[1] / 1_000_000, UTC).isoformat(timespec="microseconds"),
            "level": str(row[2]),
            "service": row[3],
            "message": row[4],
            "trace_id": row[5],
            "attrs": row[6],
        }
        try:
            with self.spill_path.open("ab") as fh:
                fh.write(orjson.dumps(record, default=str) + b"\n")
            self.spilled += 1
        except OSError:
            self.dropped += 1

    # --- the threads ------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the feeder and the delivery unit (called with the buffer lock held)."""
        self._closing.clear()
        self._not_connecting.clear()
        self._broker = Broker(self.settings, self._broker_notice)
        self._delivery = DeliveryThread(
            self._make_output,
            RowPacker(self.settings.serializer),
            batch_size=1024,
            linger_s=0.05,
            max_pending=64,
            component="handler",
        )
        self._feeder = threading.Thread(target=self._feed, name="logctl-handler", daemon=True)
        self._feeder.start()

    def _make_output(self, confirm: Callable[[object], None]) -> Output:
        broker = self._broker
        assert broker is not None
        try:
            # No retries before waiting: the wait retries for ever, and says at once why it waits.
            broker.connect(0, wait=True, should_stop=self._closing.is_set)
            declare_topology(broker, topology_of(self.settings))
            return Publisher(
                broker,
                self.settings.exchange,
                confirm,
                self.settings.max_in_flight,
                should_stop=self._closing.is_set,
                mandatory=True,
            )
        finally:
            self._not_connecting.set()  # later reconnects import nothing new

    def _feed(self) -> None:
        """Move buffered records into the delivery unit, a batch at a time, until closed."""
        delivery = self._delivery
        assert delivery is not None
        while not (self._closing.is_set() and not self._buffer):
            self._wake.wait(0.05)
            self._wake.clear()
            with self._buffer_lock:
                rows = [self._buffer.popleft() for _ in range(min(len(self._buffer), 1024))]
            if not rows:
                continue
            try:
                future = delivery.submit(rows)
            except Exception:  # noqa: BLE001 - full (the broker is away) or closed: keep them buffered
                with self._buffer_lock:
                    self._buffer.extendleft(reversed(rows))
                if self._closing.is_set():
                    return
                time.sleep(0.05)
                continue
            with self._buffer_lock:
                self._pending[future] = rows
            future.add_done_callback(self._settled)

    def _settled(self, future: Future[None]) -> None:
        with self._buffer_lock:
            rows = self._pending.pop(future, None)
            if rows is None:  # settled at close already
                return
            if future.exception() is None:
                self.delivered += len(rows)
            else:  # the delivery unit failed them: buffered again, for the next try or for close
                self._buffer.extendleft(reversed(rows))

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent's records, threads and connection are the parent's."""
        self._buffer_lock = threading.Lock()
        self._buffer = deque()
        self._wake = threading.Event()
        self._pending = {}
        self._unreachable = None
        self.submitted = self.delivered = self.dropped = self.spilled = 0
        self._feeder = None
        self._delivery = None
        self._broker = None
        self._ids = id_format(f"py-{os.urandom(6).hex()}")
        self._serial = 0
        self._not_connecting = threading.Event()
        self._not_connecting.set()
        self.createLock()


def _before_fork(ref: weakref.ReferenceType[LogctlHandler]) -> None:
    handler = ref()
    if handler is not None:
        handler._not_connecting.wait(FORK_WAIT_S)


def _after_fork(ref: weakref.ReferenceType[LogctlHandler]) -> None:
    handler = ref()
    if handler is not None:
        handler._reset_after_fork()
