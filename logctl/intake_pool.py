"""``ship --listen-workers N``: the HTTP intake in N processes on one port.

One intake process is bound by Python's one interpreter lock (py-spy under wrk: ~90% of a
core, the broker idle beside it, since its records share batches). Past that, more
processes serve the same port: each binds it with SO_REUSEPORT (the kernel spreads new
connections over them) and runs its own ``IntakeServer``: its own broker connection,
delivery thread and confirms, so a 202 still means that process's records are confirmed.
ship's own process is the first of them; the others are spawned, die with ship however
it ends (the parent-death signal, as the parse workers), stop when told and report what
they answered for ship's summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable
from multiprocessing.synchronize import Event
from typing import Any

from logctl.config import Settings
from logctl.errors import ConfigError
from logctl.intake import IntakeCounts, IntakeOptions, IntakeServer
from logctl.parallel import _die_with
from logctl.parsing.formats import set_timezone
from logctl.transport import TopologyOnce

Notify = Callable[[str], None]
START_TIMEOUT_S = 60.0


class IntakePool:
    """This process's intake and ``options.workers - 1`` more, on the same port."""

    def __init__(
        self,
        settings: Settings,
        options: IntakeOptions,
        stop: Callable[[], bool],
        notify: Notify,
        topology: TopologyOnce | None = None,
        timezone: str = "",
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.own = IntakeServer(settings, options, stop, notify, topology)
        self.port = self.own.port
        self._others = max(options.workers - 1, 0)
        self._settings = settings
        self._options = dataclasses.replace(options, port=self.port)  # a port 0 is the one the first got
        self._timezone = timezone
        self._notify = notify
        self._context = multiprocessing.get_context("spawn")  # never fork: ship's threads hold locks
        self._stop: Event | None = None
        self._results: Any = None
        self._processes: list[Any] = []
        self._shutdown_timeout = shutdown_timeout
        self.counts = IntakeCounts()  # what every process answered, once closed

    @property
    def intake(self) -> Any:
        return self.own.intake

    def start(self) -> IntakePool:
        if self._others:
            self._start_others()
        self.own.start()
        return self

    def _start_others(self) -> None:
        self._stop = self._context.Event()
        self._results = self._context.Queue()
        ready: Any = self._context.Queue()
        for _ in range(self._others):
            process = self._context.Process(
                target=_serve,
                args=(self._settings, self._options, self._timezone, self._stop, ready, self._results, os.getpid()),
                kwargs={"shutdown_timeout": self._shutdown_timeout},
                name="logctl-intake-worker",
                daemon=True,
            )
            process.start()
            self._processes.append(process)
        for _ in self._processes:
            try:
                failure = ready.get(timeout=START_TIMEOUT_S)
            except queue.Empty:
                failure = "did not start within a minute"
            if failure is not None:
                self.close(1.0)
                raise ConfigError(f"an intake worker process could not start: {failure}")

    def close(self, timeout: float) -> bool:
        """Stop every process (requests in hand are answered first); False if any lacked confirms."""
        self._shutdown_timeout = timeout
        if self._stop is not None:
            self._stop.set()
        flushed = self.own.close(timeout)
        counts = self.own.counts
        for process in self._processes:
            try:
                worker_flushed, worker_counts = self._results.get(timeout=timeout + 10)
            except queue.Empty:
                self._notify(f"intake worker {process.pid} did not report; its requests are not counted")
                continue
            flushed = flushed and worker_flushed
            counts = counts + worker_counts
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.kill()
        self.counts = counts
        return flushed


def _serve(
    settings: Settings,
    options: IntakeOptions,
    timezone: str,
    stop: Event,
    ready: Any,
    results: Any,
    parent: int,
    shutdown_timeout: float = 30.0,
) -> None:
    """An intake worker process: serve until told to stop, then report."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches ship, which tells us
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    set_timezone(timezone)
    gc.freeze()  # as ship's own process (cli.app.tune_gc_for_throughput): records live for a request
    gc.set_threshold(50_000, 20, 100)

    def notify(message: str) -> None:
        print(f"logctl: intake worker {os.getpid()}: {message}", file=sys.stderr, flush=True)

    try:
        server = IntakeServer(settings, options, stop.is_set, notify).start(announce=False)
    except Exception as exc:  # noqa: BLE001 - told to ship, which exits with it
        ready.put(str(exc))
        return
    ready.put(None)
    stop.wait()
    flushed = False
    with contextlib.suppress(Exception):
        flushed = server.close(shutdown_timeout)
    results.put((flushed, server.counts))


__all__ = ["IntakeCounts", "IntakePool"]
