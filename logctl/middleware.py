"""Request logging for web applications: one record per request, through ``logging``.

    app = LogctlASGIMiddleware(app)           # Starlette, FastAPI, any ASGI app
    app.wsgi_app = LogctlWSGIMiddleware(app.wsgi_app)   # Flask, any WSGI app

Each request is logged to the ``logctl.access`` logger (or the one given) with the
method, path, status, duration, client address and trace id (W3C ``traceparent``, else
``X-Trace-Id`` or ``X-Request-Id``) as attrs. Attach a ``LogctlHandler`` to that logger
(or the root) and the records travel as every other logctl record does: the middleware
itself never waits for the broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any

from logctl.parsing.fields import trace_from_value

ACCESS_LOGGER = "logctl.access"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def trace_of_headers(headers: dict[str, str]) -> str | None:
    """The request's trace id: W3C ``traceparent``, else ``x-trace-id`` or ``x-request-id``."""
    if "traceparent" in headers:
        found = trace_from_value("traceparent", headers["traceparent"])
        if found is not None:
            return found
    for key in ("x-trace-id", "x-request-id"):
        if headers.get(key):
            return headers[key]
    return None


def _log(
    logger: logging.Logger,
    method: str,
    path: str,
    status: int,
    started: float,
    client: str | None,
    trace_id: str | None,
) -> None:
    duration_ms = (time.perf_counter() - started) * 1000
    level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
    logger.log(
        level,
        "%s %s %d %.1fms",
        method,
        path,
        status,
        duration_ms,
        extra={
            "http_method": method,
            "http_path": path,
            "http_status": status,
            "duration_ms": round(duration_ms, 3),
            "client": client,
            "trace_id": trace_id,
        },
    )


class LogctlASGIMiddleware:
    """ASGI middleware: a record per HTTP request (500 when the app raised before answering)."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message["status"])
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or ()}
        client = scope.get("client")
        try:
            await self.app(scope, receive, send_status)
        finally:
            _log(
                self.logger,
                str(scope.get("method", "")),
                str(scope.get("path", "")),
                status,
                started,
                str(client[0]) if client else None,
                trace_of_headers(headers),
            )


class LogctlWSGIMiddleware:
    """WSGI middleware: a record per request, once its response has been sent (or failed)."""

    def __init__(self, app: Callable[..., Iterable[bytes]], logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        started = time.perf_counter()
        status = [500]

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = int(status_line.split(" ", 1)[0])
            return start_response(status_line, headers, exc_info)

        headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
        try:
            body = self.app(environ, start)
            try:
                yield from body
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        finally:
            _log(
                self.logger,
                str(environ.get("REQUEST_METHOD", "")),
                str(environ.get("PATH_INFO", "")),
                status[0],
                started,
                environ.get("REMOTE_ADDR"),
                trace_of_headers(headers),
            )
