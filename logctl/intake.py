"""HTTP intake: ``POST /api/log`` in, confirmed batches out; 202 means durable.

Requests go through the same delivery unit as ship (``delivery.DeliveryThread``), so the
records of concurrent requests share messages, and a request is answered ``202`` only
once the broker confirmed every one of its records. Nothing accepted is dropped: while
the broker is down or blocking publishers the intake answers ``503`` with
``Retry-After``, and past ``max_inflight_bytes`` of requests awaiting confirms ``429``,
so memory stays bounded. An ``Idempotency-Key`` header makes a retry's records the same
records (the sinks drop the second copy).

The server is uvicorn (with httptools) running a Starlette app, in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import itertools
import os
import queue
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from logctl import metrics
from logctl.codec import RowPacker
from logctl.config import Settings
from logctl.delivery import DeliveryThread, Output
from logctl.errors import ConfigError
from logctl.parsing.fields import level_from_value, micros_from_value, parsed_from_mapping
from logctl.processing import NO_PROCESSING, ProcessingOptions, processing_of
from logctl.records import Level, WireRow, id_format, micros_of, now_utc, source_prefix
from logctl.transport import Broker, Publisher, declare_topology, topology_of

Notify = Callable[[str], None]
JSON_TYPES = frozenset({"application/json", "text/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-lines"})
ENCODINGS = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
SERVICE_HEADER = "x-logctl-service"
RETRY_BROKER_S = 5  # Retry-After while the broker is down or blocking
RETRY_BUSY_S = 1  # Retry-After while too much awaits confirms
WAIT_SLICE_S = 0.25  # a waiting request looks at the broker's state this often


@dataclass(frozen=True, slots=True)
class IntakeOptions:
    """Where to listen and what to take."""

    host: str
    port: int
    tokens: Mapping[str, str] = field(default_factory=dict)  # bearer token -> its name
    service: str | None = None  # for records that name none (after the header)
    max_body_bytes: int = 10 << 20  # per request, after decompression
    max_inflight_bytes: int = 64 << 20  # bodies of requests awaiting confirms
    ack_timeout_s: float = 10.0  # the longest a request waits for its confirm
    outage_grace_s: float = 1.0  # how long it waits on once the broker is seen away
    cert_file: str | None = None
    key_file: str | None = None
    batch_size: int = 2048
    linger_s: float = 0.005  # a 202 waits this long at least; concurrent requests still share batches
    processing: ProcessingOptions = NO_PROCESSING  # the edge options (--min-level, --drop, --redact ...)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_tokens(path: Path) -> dict[str, str]:
    """Tokens, one a line (``name:token``, or a bare token named ``token-N``); # comments allowed."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read --token-file {path}: {exc.strerror}") from exc
    tokens: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, token = line.partition(":")
        if not sep:
            name, token = f"token-{number}", line
        if len(token.strip()) < 16:
            raise ConfigError(f"--token-file {path}, line {number}: a token needs at least 16 characters")
        tokens[token.strip()] = name.strip()
    if not tokens:
        raise ConfigError(f"--token-file {path} holds no token")
    return tokens


# --- request bodies to records ----------------------------------------------------------------


class BadBody(Exception):
    """A body that cannot be taken: ``status`` and a JSON answer."""

    def __init__(self, status: int, message: str, records: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.answer: dict[str, object] = {"error": message}
        if records:
            self.answer["records"] = records


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """The body decoded from its Content-Encoding, at most ``limit`` bytes (413 past it)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ENCODINGS:
        raise BadBody(415, f"Content-Encoding {encoding!r} is not taken: use gzip, deflate or none")
    wbits = 16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadBody(400, f"the body is not valid {encoding}: {exc}") from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise BadBody(413, f"the body is over {limit} bytes once decompressed")
    return data


def _objects(body: bytes, media_type: str) -> list[tuple[int, object | BadBody]]:
    """The JSON values of a body (an object, an array of them, or one a line), each with its index."""
    if media_type in JSON_TYPES:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            if b"\n" not in body.strip():
                raise BadBody(400, "the body is not valid JSON") from None
        else:
            return list(enumerate(value if isinstance(value, list) else [value]))
    found: list[tuple[int, object | BadBody]] = []
    for index, line in enumerate(line for line in body.split(b"\n") if line.strip()):
        try:
            found.append((index, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            found.append((index, BadBody(400, f"not valid JSON: {exc}")))
    return found


_serial = itertools.count()
_PROCESS = os.urandom(4).hex()


def request_prefix(idempotency_key: str | None, token_name: str) -> str:
    """Record-id prefix of one request: from the Idempotency-Key (so a retry repeats its ids), else new."""
    if idempotency_key:
        return source_prefix(f"http:{token_name}:{idempotency_key}".encode())
    return f"http-{time.time_ns():016x}{_PROCESS}{next(_serial):08x}"  # unique, in arrival order


def records_of_body(body: bytes, media_type: str, service: str, prefix: str) -> list[WireRow]:
    """The body's records as wire rows; BadBody naming every bad record (then none is taken)."""
    if media_type not in JSON_TYPES | NDJSON_TYPES:
        raise BadBody(
            415, f"Content-Type {media_type or 'none'!r} is not taken: use application/json or application/x-ndjson"
        )
    ids = id_format(prefix)
    now = micros_of(now_utc())
    rows: list[WireRow] = []
    bad: list[dict[str, object]] = []
    for index, value in _objects(body, media_type):
        if isinstance(value, BadBody):
            bad.append({"index": index, "reason": str(value)})
        elif not isinstance(value, dict):
            bad.append({"index": index, "reason": f"a record is a JSON object, not {type(value).__name__}"})
        else:
            row = _row(value, ids % index, now, service)
            if isinstance(row, str):
                bad.append({"index": index, "reason": row})
            else:
                rows.append(row)
    if bad:
        raise BadBody(400, f"{len(bad)} of {len(bad) + len(rows)} records are bad; none was taken", bad)
    if not rows:
        raise BadBody(400, "the body holds no record")
    return rows


def _schema_error(obj: dict[str, Any]) -> str | None:
    """What is wrong with the fields of the record JSON's own schema, if anything.

    ``message``, ``level``, ``timestamp``, ``service`` and ``trace_id`` are the README's
    record fields: given under those names, a value that means nothing as that field is
    an error naming it (a client bug is better answered than stored as INFO, now). Other
    keys (``msg``, ``ts``, ``severity``, ...) are read as the parser reads a JSON line.
    """
    for key in ("message", "service", "trace_id"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            return f"{key} must be a string, not {type(value).__name__} {orjson.dumps(value).decode()[:40]}"
    level = obj.get("level")
    if level is not None and level_from_value(level, "level") is None:
        return f"level {orjson.dumps(level).decode()[:40]} is no level: use TRACE, DEBUG, INFO, WARN, ERROR or FATAL"
    stamp = obj.get("timestamp")
    if stamp is not None and micros_from_value(stamp) is None:
        return (
            f"timestamp {orjson.dumps(stamp).decode()[:40]} is no time: use ISO 8601 "
            "(2026-12-03T10:00:00Z) or epoch seconds"
        )
    return None


def _row(obj: dict[str, Any], default_id: str, now: int, service: str) -> WireRow | str:
    """One record in the schema --dry-run prints (fields as the parser maps them); an error text if bad."""
    given_id = obj.pop("id", None)
    attrs = obj.pop("attrs", None)
    error = _schema_error(obj)
    if error is not None:
        return error
    parsed = parsed_from_mapping(obj, "")
    if not parsed.message:
        return "no message (give message or msg)"
    record_attrs = parsed.attrs
    if isinstance(attrs, dict):
        record_attrs = {**attrs, **record_attrs}
    return [
        given_id if isinstance(given_id, str) and given_id else default_id,
        parsed.micros if parsed.micros is not None else now,
        parsed.level or Level.INFO,
        parsed.service or service,
        parsed.message,
        parsed.trace_id,
        record_attrs,
    ]


# --- the app ----------------------------------------------------------------------------------


class Intake:
    """The ASGI application: routes, auth, limits, and the wait for confirms."""

    def __init__(self, options: IntakeOptions, delivery: DeliveryThread, broker_state: Callable[[], str | None]):
        """``broker_state()`` is None while publishing can go on, else why it cannot."""
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.options = options
        self.delivery = delivery
        self.broker_state = broker_state
        self.inflight_bytes = 0
        self.accepted_requests = 0
        self.accepted_records = 0
        self.refused_requests = 0  # answered 4xx or 5xx
        self.processing = processing_of(options.processing)  # None: nothing asked for
        self.dropped_records = 0  # by the edge options
        self.app = Starlette(
            routes=[
                Route("/api/log", self.post_log, methods=["POST"]),
                Route("/v1/logs", self.post_otlp, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    async def healthz(self, _request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"})

    async def readyz(self, _request: Any) -> Any:
        from starlette.responses import JSONResponse

        reason = self._not_ready()
        if reason is not None:
            return JSONResponse({"status": "not ready", "reason": reason}, 503)
        return JSONResponse({"status": "ready"})

    def _not_ready(self) -> str | None:
        if self.delivery.error is not None:
            return f"delivery stopped: {self.delivery.error}"
        return self.broker_state()

    async def post_log(self, request: Any) -> Any:
        started = time.perf_counter()
        response = await self._post_log(request)
        metrics.METRICS.http_response(response.status_code, time.perf_counter() - started)
        return response

    async def _post_log(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        try:
            token_name = self._authorized(request.headers.get("authorization", ""))
            reason = self._not_ready()
            if reason is not None:
                raise _Retry(503, reason, RETRY_BROKER_S)
            body = await self._read_body(request)
            if self.inflight_bytes + len(body) > self.options.max_inflight_bytes:
                raise _Retry(429, "too many records await the broker's confirms", RETRY_BUSY_S)
            media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            service = request.headers.get(SERVICE_HEADER) or self.options.service or token_name or "http"
            prefix = request_prefix(request.headers.get("idempotency-key"), token_name or "")
            rows, dropped = self._processed(records_of_body(body, media_type, service, prefix))
            if rows:
                await self._deliver(rows, len(body))
        except BadBody as exc:
            self.refused_requests += 1
            return JSONResponse(exc.answer, exc.status)
        except _Retry as exc:
            self.refused_requests += 1
            return JSONResponse({"error": str(exc)}, exc.status, headers={"Retry-After": str(exc.after)})
        except _Unauthorized:
            self.refused_requests += 1
            return JSONResponse({"error": "a valid bearer token is needed"}, 401, {"WWW-Authenticate": "Bearer"})
        self.accepted_requests += 1
        self.accepted_records += len(rows)
        answer = {"accepted": len(rows), "dropped": dropped} if dropped else {"accepted": len(rows)}
        return JSONResponse(answer, 202)

    def _processed(self, rows: list[WireRow]) -> tuple[list[WireRow], int]:
        """The rows the edge options keep, processed, and how many they dropped."""
        if self.processing is None:
            return rows, 0
        kept = self.processing.kept(rows)
        dropped = len(rows) - len(kept)
        if dropped:
            self.dropped_records += dropped
            metrics.METRICS.dropped("intake", dropped)
        return kept, dropped

    async def post_otlp(self, request: Any) -> Any:
        started = time.perf_counter()
        response = await self._post_otlp(request)
        metrics.METRICS.http_response(response.status_code, time.perf_counter() - started)
        return response

    async def _post_otlp(self, request: Any) -> Any:
        """OTLP/HTTP logs: 200 (with partial_success for rejected records) once every record is confirmed."""
        from starlette.responses import Response

        from logctl.otlp import JSON_TYPE, PROTOBUF_TYPE, BadExport, export_prefix, response_body, rows_of_export

        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        answer_type = PROTOBUF_TYPE if media_type == PROTOBUF_TYPE else JSON_TYPE

        def status(code: int, message: str, headers: dict[str, str] | None = None) -> Any:
            from logctl.otlp import status_body

            self.refused_requests += 1
            return Response(status_body(answer_type, message), code, headers, media_type=answer_type)

        if media_type not in (PROTOBUF_TYPE, JSON_TYPE):
            return status(415, f"Content-Type {media_type or 'none'!r}: use application/x-protobuf or application/json")
        try:
            token_name = self._authorized(request.headers.get("authorization", ""))
            reason = self._not_ready()
            if reason is not None:
                raise _Retry(503, reason, RETRY_BROKER_S)
            body = await self._read_body(request)
            if self.inflight_bytes + len(body) > self.options.max_inflight_bytes:
                raise _Retry(429, "too many records await the broker's confirms", RETRY_BUSY_S)
            service = self.options.service or token_name or "otlp"
            found, rejected, why = rows_of_export(body, media_type, service, export_prefix(body, token_name or ""))
            rows, _dropped = self._processed(found)
            if rows:
                await self._deliver(rows, len(body))
        except (BadExport, BadBody) as exc:
            return status(getattr(exc, "status", 400), str(exc))
        except _Retry as exc:
            return status(exc.status, str(exc), {"Retry-After": str(exc.after)})
        except _Unauthorized:
            return status(401, "a valid bearer token is needed", {"WWW-Authenticate": "Bearer"})
        self.accepted_requests += 1
        self.accepted_records += len(rows)
        return Response(response_body(answer_type, rejected, why), 200, media_type=answer_type)

    def _authorized(self, header: str) -> str | None:
        """The token's name (None when no tokens are configured); _Unauthorized if it is wrong."""
        tokens = self.options.tokens
        if not tokens:
            return None
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer":
            for token, name in tokens.items():
                if hmac.compare_digest(given.strip().encode(), token.encode()):
                    return name
        raise _Unauthorized()

    async def _read_body(self, request: Any) -> bytes:
        limit = self.options.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise BadBody(413, f"the body is over {limit} bytes (--max-body-bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadBody(413, f"the body is over {limit} bytes (--max-body-bytes)")
            chunks.append(chunk)
        return decompress(b"".join(chunks), request.headers.get("content-encoding", ""), limit)

    async def _deliver(self, rows: list[WireRow], size: int) -> None:
        try:
            future = self.delivery.submit(rows)
        except queue.Full:
            raise _Retry(429, "too many requests await batching", RETRY_BUSY_S) from None
        self.inflight_bytes += size
        try:
            await self._confirmed(asyncio.wrap_future(future))
        except _Retry:
            raise
        except Exception as exc:
            raise _Retry(503, f"delivery failed: {exc}", RETRY_BROKER_S) from exc
        finally:
            self.inflight_bytes -= size

    async def _confirmed(self, confirm: asyncio.Future[None]) -> None:
        """Wait for a request's confirm, bounded: ``ack_timeout_s``, or ``outage_grace_s`` once the broker is away.

        A broker lost while the request waits (its connection gone, or blocking publishers)
        is answered 503 after the grace, not held until it returns; an answer is never 202
        without the confirm. The records may still arrive: a retry with the same
        Idempotency-Key stores them once.
        """
        retry = "retry with the same Idempotency-Key so that nothing is stored twice"
        deadline = time.monotonic() + self.options.ack_timeout_s
        away_since: float | None = None
        while True:
            now = time.monotonic()
            try:
                await asyncio.wait_for(asyncio.shield(confirm), min(WAIT_SLICE_S, max(deadline - now, 0.001)))
                return
            except TimeoutError:
                pass
            now = time.monotonic()
            reason = self._not_ready()
            away_since = (away_since or now) if reason is not None else None
            if away_since is not None and now - away_since >= self.options.outage_grace_s:
                raise _Retry(503, f"{reason} while this request waited for its confirm; {retry}", RETRY_BROKER_S)
            if now >= deadline:
                raise _Retry(
                    503, f"the broker did not confirm within {self.options.ack_timeout_s:g} s; {retry}", RETRY_BROKER_S
                )


class _Retry(Exception):
    def __init__(self, status: int, message: str, after: int) -> None:
        super().__init__(message)
        self.status = status
        self.after = after


class _Unauthorized(Exception):
    pass


# --- running it ---------------------------------------------------------------------------------


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it Nagle and delayed ACKs held every keep-alive answer 40 ms (measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    return sock


class IntakeServer:
    """The intake running: its own broker connection, delivery thread and HTTP server thread."""

    def __init__(self, settings: Settings, options: IntakeOptions, stop: Callable[[], bool], notify: Notify) -> None:
        if not options.tokens and not is_loopback(options.host):
            raise ConfigError(
                f"refusing to listen on {options.host}:{options.port} without --token-file: "
                "beyond loopback every request needs a bearer token"
            )
        if (options.cert_file is None) != (options.key_file is None):
            raise ConfigError("--tls-cert-file and --tls-key-file go together")
        self.settings = settings
        self.options = options
        self.notify = notify
        self._stop = stop
        self.broker = Broker(settings, notify)
        self._sock = _listening_socket(options.host, options.port)
        self.port = int(self._sock.getsockname()[1])
        self.delivery = DeliveryThread(
            self._make_output, RowPacker(settings.serializer), batch_size=options.batch_size, linger_s=options.linger_s
        )
        self.intake = Intake(options, self.delivery, self._broker_state)
        self._server: Any = None
        self._thread = threading.Thread(target=self._serve, name="logctl-intake", daemon=True)

    def start(self) -> IntakeServer:
        import uvicorn

        config = uvicorn.Config(
            self.intake,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="httptools",
            ssl_certfile=self.options.cert_file,
            ssl_keyfile=self.options.key_file,
            timeout_graceful_shutdown=int(self.options.ack_timeout_s) + 5,
        )
        self._server = uvicorn.Server(config)
        self._thread.start()
        scheme = "https" if self.options.cert_file else "http"
        self.notify(f"listening on {scheme}://{self.options.host}:{self.port}/api/log")
        return self

    def close(self, timeout: float) -> bool:
        """Stop taking requests (those in hand are answered), then flush: False if confirms are missing."""
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._sock.close()
        flushed = self.delivery.close(timeout)
        self.broker.close()
        return flushed

    def _serve(self) -> None:
        self._server.run(sockets=[self._sock])

    def _make_output(self, confirm: Callable[[object], None]) -> Output:
        """Connect (waiting for the broker, so that the intake answers 503 meanwhile) and publish."""
        broker = self.broker
        broker.connect(self.settings.connect_retries, wait=True, should_stop=self._stop)
        declare_topology(broker, topology_of(self.settings))
        return Publisher(
            broker, self.settings.exchange, confirm, self.settings.max_in_flight, should_stop=self._stop, mandatory=True
        )

    def _broker_state(self) -> str | None:
        if not self.broker.connected:
            return "not connected to the broker"
        if self.broker.blocked:
            return "the broker blocks publishing (memory or disk alarm)"
        return None
