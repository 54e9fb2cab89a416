"""Prometheus metrics of ship, consume and the intake (``--metrics-address HOST:PORT``).

The core reports what moved through ``METRICS``, once per batch (never per record), and
by default that is a no-op: ``serve`` swaps in the Prometheus implementation and starts
its HTTP endpoint, so prometheus-client is imported only by runs that ask for metrics.
Names follow Vector's and Fluent Bit's (see the README's metrics list).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


class Metrics:
    """What the core reports; this base records nothing."""

    def received(self, component: str, lines: int, nbytes: int) -> None: ...

    def published(self, component: str, records: int) -> None: ...

    def confirmed(self, component: str, records: int, latency_s: float) -> None: ...

    def republished(self, reason: str, batches: int) -> None: ...

    def stored(self, written: int, duplicates: int, latency_s: float) -> None: ...

    def redelivered(self, messages: int) -> None: ...

    def dead_lettered(self, messages: int) -> None: ...

    def error(self, error_type: str, stage: str) -> None: ...

    def dropped(self, component: str, records: int) -> None:
        """Records the edge options (--min-level, --keep, --drop) dropped before sending."""

    def unfit(self, lines: int) -> None:
        """Lines a forced format did not fit (kept whole, as INFO)."""

    def http_response(self, status: int, duration_s: float) -> None: ...

    def watch_paused(self, reasons: Mapping[str, Callable[[], bool]]) -> None:
        """Gauges read at scrape time: 1 while reading is paused for that reason."""

    def files_behind(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        """Bytes behind per file, read at scrape time from ``snapshot()``."""


METRICS: Metrics = Metrics()


class _Prometheus(Metrics):
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.core import GaugeMetricFamily

        self._gauge_family = GaugeMetricFamily
        self.registry = CollectorRegistry()
        r = self.registry
        self._lines = Counter("logctl_received_lines_total", "Lines read", ["component"], registry=r)
        self._bytes = Counter("logctl_received_bytes_total", "Bytes read", ["component"], registry=r)
        self._published = Counter("logctl_sent_records_total", "Records published", ["component"], registry=r)
        self._confirmed = Counter(
            "logctl_confirmed_records_total", "Records the broker confirmed", ["component"], registry=r
        )
        self._latency = Histogram(
            "logctl_confirm_latency_seconds",
            "From a batch's publish to its confirm",
            ["component"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self._republished = Counter(
            "logctl_batches_republished_total",
            "Batches published again: nacked, returned unroutable, or unconfirmed at a lost connection",
            ["reason"],
            registry=r,
        )
        self._written = Counter("logctl_sink_written_records_total", "Records a sink committed", registry=r)
        self._duplicates = Counter("logctl_sink_discarded_duplicates_total", "Records a sink held already", registry=r)
        self._sink_latency = Histogram(
            "logctl_sink_latency_seconds", "A batch's store in the sink", registry=r, buckets=(0.001, 0.01, 0.05, 0.1,
            0.25, 0.5, 1, 2.5, 5, 10)
        )  # fmt: skip
        self._redelivered = Counter("logctl_redeliveries_total", "Messages the broker redelivered", registry=r)
        self._dead = Counter("logctl_dead_lettered_total", "Messages set aside as undecodable", registry=r)
        self._errors = Counter(
            "logctl_errors_total", "Errors logctl recovered from", ["error_type", "stage"], registry=r
        )
        self._dropped = Counter(
            "logctl_dropped_records_total", "Records the edge options dropped", ["component"], registry=r
        )
        self._unfit = Counter(
            "logctl_format_unfit_lines_total", "Lines a forced format did not fit (kept whole)", registry=r
        )
        self._responses = Counter("logctl_http_server_responses_sent_total", "Intake answers", ["status"], registry=r)
        self._handler_duration = Histogram(
            "logctl_http_server_handler_duration_seconds", "From a request to its answer", registry=r
        )
        self._paused: Mapping[str, Callable[[], bool]] = {}
        self._behind: Callable[[], Mapping[str, int]] = dict
        r.register(_Live(self))

    def received(self, component: str, lines: int, nbytes: int) -> None:
        self._lines.labels(component).inc(lines)
        self._bytes.labels(component).inc(nbytes)

    def published(self, component: str, records: int) -> None:
        self._published.labels(component).inc(records)

    def confirmed(self, component: str, records: int, latency_s: float) -> None:
        self._confirmed.labels(component).inc(records)
        self._latency.labels(component).observe(latency_s)

    def republished(self, reason: str, batches: int) -> None:
        self._republished.labels(reason).inc(batches)

    def stored(self, written: int, duplicates: int, latency_s: float) -> None:
        self._written.inc(written)
        self._duplicates.inc(duplicates)
        self._sink_latency.observe(latency_s)

    def redelivered(self, messages: int) -> None:
        self._redelivered.inc(messages)

    def dead_lettered(self, messages: int) -> None:
        self._dead.inc(messages)

    def error(self, error_type: str, stage: str) -> None:
        self._errors.labels(error_type, stage).inc()

    def dropped(self, component: str, records: int) -> None:
        self._dropped.labels(component).inc(records)

    def unfit(self, lines: int) -> None:
        self._unfit.inc(lines)

    def http_response(self, status: int, duration_s: float) -> None:
        self._responses.labels(str(status)).inc()
        self._handler_duration.observe(duration_s)

    def watch_paused(self, reasons: Mapping[str, Callable[[], bool]]) -> None:
        self._paused = {**self._paused, **reasons}

    def files_behind(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        self._behind = snapshot


class _Live:
    """Gauges computed when Prometheus scrapes: reading paused, bytes behind per file."""

    def __init__(self, metrics: _Prometheus) -> None:
        self.metrics = metrics

    def collect(self) -> Any:
        family = self.metrics._gauge_family
        paused = family("logctl_ingestion_paused", "1 while reading waits for this reason", labels=["reason"])
        for reason, check in self.metrics._paused.items():
            paused.add_metric([reason], 1.0 if check() else 0.0)
        yield paused
        behind = family("logctl_file_bytes_behind", "Bytes of a file not yet confirmed", labels=["file"])
        for path, count in sorted(self.metrics._behind().items()):
            behind.add_metric([path], float(count))
        yield behind

    def describe(self) -> list[Any]:
        return []  # collected live; nothing to check at registration


def serve(host: str, port: int) -> int:
    """Start the /metrics endpoint (a thread of prometheus-client's) and report from now on; returns the port."""
    global METRICS
    from prometheus_client import start_http_server

    from logctl.errors import ConfigError

    live = _Prometheus()
    try:
        server, _thread = start_http_server(port, addr=host, registry=live.registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
    METRICS = live
    return int(server.server_port)
