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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson

from logctl import metrics
from logctl.codec import RowPacker
from logctl.config import Settings
from logctl.delivery import DeliveryThread, Output
from logctl.errors import ConfigError
from logctl.parsing.fields import Parsed, level_from_value, micros_from_value, parsed_from_mapping, trace_from_value
from logctl.processing import NO_PROCESSING, ProcessingOptions, processing_of
from logctl.records import Level, WireRow, id_format, micros_of, now_utc, source_prefix
from logctl.transport import Broker, TopologyOnce, open_publisher

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
    linger_s: float = 0.005  # the longest records wait to be sent while other batches are in flight
    workers: int = 1  # processes serving the port (SO_REUSEPORT), each with its own connection
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


def _as_one_array(body: bytes) -> list[dict[str, Any]] | None:
    """The objects of an NDJSON body in one orjson call, if every line is one object; else None.

    Each newline must sit between ``}`` and ``{`` and each value must be an object, one a
    line: then the body as an array holds exactly the lines' objects. Anything else (blank
    lines, a bad line, other values) takes the line-by-line path, which names the bad lines.
    """
    text = body.strip().replace(b"\r\n", b"\n")
    lines = text.count(b"\n") + 1
    if text[:1] != b"{" or text[-1:] != b"}" or text.count(b"}\n{") != lines - 1:
        return None
    try:
        values = orjson.loads(b"[" + text.replace(b"}\n{", b"},{") + b"]")
    except orjson.JSONDecodeError:
        return None
    if len(values) != lines or not all(isinstance(value, dict) for value in values):
        return None
    return values  # type: ignore[no-any-return]


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
    joined = _as_one_array(body)
    if joined is not None:
        return list(enumerate(joined))
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
    fast = _typed_rows(body, media_type, ids, now, service)
    if fast is not None:
        return fast
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


class _Record(msgspec.Struct, forbid_unknown_fields=True):
    """A record in the record JSON's own schema, as typed values: what most clients send."""

    # UNSET, not None: a null the general path keeps in attrs, so a null is no value of these
    message: str | msgspec.UnsetType = msgspec.UNSET
    level: str | int | msgspec.UnsetType = msgspec.UNSET
    service: str | msgspec.UnsetType = msgspec.UNSET
    trace_id: str | msgspec.UnsetType = msgspec.UNSET
    timestamp: str | int | float | msgspec.UnsetType = msgspec.UNSET
    id: str | None = None
    attrs: dict[str, Any] | None = None


_decode_records = msgspec.json.Decoder(list[_Record]).decode


def _typed_rows(body: bytes, media_type: str, ids: str, now: int, service: str) -> list[WireRow] | None:
    """The rows of a body whose records are all plain ones of the record JSON, decoded and typed
    in C by msgspec (parsing was a third of the intake's time per request, and this path
    a fifth of it); None for any other body, which the general path reads and names the
    faults of. A test holds the two to the same rows."""
    if media_type in NDJSON_TYPES:
        text = body.strip().replace(b"\r\n", b"\n")
        lines = text.count(b"\n") + 1
        if text[:1] != b"{" or text[-1:] != b"}" or text.count(b"}\n{") != lines - 1:
            return None
        text = b"[" + text.replace(b"}\n{", b"},{") + b"]"
    elif body[:1] == b"[":
        text, lines = body, -1
    else:
        return None
    try:
        records = _decode_records(text)
    except msgspec.DecodeError:  # a ValidationError too: another key, or a value of another type
        return None
    if not records or (lines >= 0 and len(records) != lines):
        return None
    rows: list[WireRow] = []
    for index, record in enumerate(records):
        row = _typed_row(record, ids % index, now, service)
        if row is None:
            return None
        rows.append(row)
    return rows


def _typed_row(record: _Record, default_id: str, now: int, service: str) -> WireRow | None:
    """One row as ``_row`` makes it, or None where ``_row`` would do more (an error, or a value kept in attrs)."""
    unset = msgspec.UNSET
    message = record.message
    if message is unset or not message:
        return None
    level = Level.INFO if record.level is unset else level_from_value(record.level, "level")
    micros = now if record.timestamp is unset else micros_from_value(record.timestamp)
    trace_id = None if record.trace_id is unset else trace_from_value("trace_id", record.trace_id)
    name = None if record.service is unset else record.service
    if level is None or micros is None or (record.trace_id is not unset and trace_id is None):
        return None
    if name is not None and (not name or name[0].isdigit()):  # kept in attrs by the parser: the general path
        return None
    return [
        record.id or default_id,
        micros,
        level,
        name or service,
        message,
        trace_id,
        dict(record.attrs) if record.attrs is not None else {},
    ]


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
            return _not_text(key, value)
    level = obj.get("level")
    if level is not None and level_from_value(level, "level") is None:
        return _no_level(level)
    stamp = obj.get("timestamp")
    if stamp is not None and micros_from_value(stamp) is None:
        return _no_time(stamp)
    return None


def _not_text(key: str, value: object) -> str:
    return f"{key} must be a string, not {type(value).__name__} {orjson.dumps(value).decode()[:40]}"


def _no_level(value: object) -> str:
    return f"level {orjson.dumps(value).decode()[:40]} is no level: use TRACE, DEBUG, INFO, WARN, ERROR or FATAL"


def _no_time(value: object) -> str:
    shown = orjson.dumps(value).decode()[:40]
    return f"timestamp {shown} is no time: use ISO 8601 (2026-12-03T10:00:00Z) or epoch seconds"


_CANONICAL = frozenset({"message", "level", "service", "trace_id", "timestamp"})  # the record JSON's own keys


def _canonical(obj: dict[str, Any]) -> Parsed | str:
    """``_schema_error`` and then ``parsed_from_mapping`` in one pass, for a record that has only
    the record JSON's own keys: no looking for the keys other loggers use, each value read
    once (a third of the intake's time per record went there). A test holds it to the two."""
    level = micros = service = trace_id = message = None
    for key in ("message", "service", "trace_id"):
        raw = obj.get(key)
        if raw is not None and not isinstance(raw, str):
            return _not_text(key, raw)
    raw = obj.get("level")
    if raw is not None:
        level = level_from_value(raw, "level")
        if level is None:
            return _no_level(raw)
        del obj["level"]
    raw = obj.get("timestamp")
    if raw is not None:
        micros = micros_from_value(raw)
        if micros is None:
            return _no_time(raw)
        del obj["timestamp"]
    raw = obj.get("service")
    if raw and not raw[0].isdigit():  # a name, not a measure (as the parser)
        service = obj.pop("service")
    raw = obj.get("trace_id")
    if raw is not None:
        trace_id = trace_from_value("trace_id", raw)
        if trace_id is not None:
            del obj["trace_id"]
    if isinstance(obj.get("message"), str):
        message = obj.pop("message")
    return Parsed(message or "", level, micros, service, trace_id, obj)


def _row(obj: dict[str, Any], default_id: str, now: int, service: str) -> WireRow | str:
    """One record in the schema --dry-run prints (fields as the parser maps them); an error text if bad."""
    given_id = obj.pop("id", None)
    attrs = obj.pop("attrs", None)
    if obj.keys() <= _CANONICAL:
        parsed = _canonical(obj)
        if isinstance(parsed, str):
            return parsed
    else:
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
        self._waiters = _Waiters(options, self._not_ready)
        self._posts: dict[str, Callable[[_Request], Awaitable[_Answer]]] = {
            "/api/log": self._post_log,
            "/v1/logs": self._post_otlp,
        }
        self.app = Starlette(
            routes=[
                Route("/api/log", self._not_allowed, methods=["POST"]),  # other methods: 405, by Starlette
                Route("/v1/logs", self._not_allowed, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"]),
            ]
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The two POST routes straight on ASGI; the rest (health, 404, 405) through Starlette.

        The hot path skips Starlette's middleware, Request and Response objects: a quarter
        of the intake's time per request went there (py-spy under wrk).
        """
        route = self._posts.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            answer = await route(_Request(scope, receive))
        except _Disconnected:
            return  # the client went away before its body was read: nobody to answer
        except Exception as exc:  # noqa: BLE001 - a bug: answered 500, as Starlette would, and the intake goes on
            self.refused_requests += 1
            answer = _Answer(500, orjson.dumps({"error": f"internal error: {type(exc).__name__}: {exc}"}))
        headers = [(b"content-type", answer.content_type), (b"content-length", b"%d" % len(answer.body))]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers + answer.headers})
        await send({"type": "http.response.body", "body": answer.body})
        metrics.METRICS.http_response(answer.status, time.perf_counter() - started)

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

    async def _not_allowed(self, _request: Any) -> Any:  # never called: POSTs are taken in __call__
        raise AssertionError("unreachable")

    async def _admitted(self, request: _Request) -> tuple[str | None, bytes]:
        """What every POST route checks first: the token, the broker, the body and its room.

        Returns the token's name and the body; _Unauthorized, _Retry or BadBody otherwise.
        """
        token_name = self._authorized(request.headers.get("authorization", ""))
        reason = self._not_ready()
        if reason is not None:
            raise _Retry(503, reason, RETRY_BROKER_S)
        body = await self._read_body(request)
        if self.inflight_bytes + len(body) > self.options.max_inflight_bytes:
            raise _Retry(429, "too many records await the broker's confirms", RETRY_BUSY_S)
        return token_name, body

    async def _post_log(self, request: _Request) -> _Answer:
        try:
            token_name, body = await self._admitted(request)
            media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            service = request.headers.get(SERVICE_HEADER) or self.options.service or token_name or "http"
            prefix = request_prefix(request.headers.get("idempotency-key"), token_name or "")
            rows, dropped = self._processed(records_of_body(body, media_type, service, prefix))
            if rows:
                await self._deliver(rows, len(body))
        except BadBody as exc:
            self.refused_requests += 1
            return _Answer(exc.status, orjson.dumps(exc.answer))
        except _Retry as exc:
            self.refused_requests += 1
            return _Answer(exc.status, orjson.dumps({"error": str(exc)}), [(b"retry-after", b"%d" % exc.after)])
        except _Unauthorized:
            self.refused_requests += 1
            return _Answer(401, UNAUTHORIZED_BODY, [(b"www-authenticate", b"Bearer")])
        self.accepted_requests += 1
        self.accepted_records += len(rows)
        if dropped:
            return _Answer(202, orjson.dumps({"accepted": len(rows), "dropped": dropped}))
        return _Answer(202, b'{"accepted":%d}' % len(rows))

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

    async def _post_otlp(self, request: _Request) -> _Answer:
        """OTLP/HTTP logs: 200 (with partial_success for rejected records) once every record is confirmed."""
        from logctl.otlp import JSON_TYPE, PROTOBUF_TYPE, BadExport, export_prefix, response_body, rows_of_export

        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        answer_type = PROTOBUF_TYPE if media_type == PROTOBUF_TYPE else JSON_TYPE

        def status(code: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> _Answer:
            from logctl.otlp import status_body

            self.refused_requests += 1
            return _Answer(code, status_body(answer_type, message), headers or [], answer_type.encode())

        if media_type not in (PROTOBUF_TYPE, JSON_TYPE):
            return status(415, f"Content-Type {media_type or 'none'!r}: use application/x-protobuf or application/json")
        try:
            token_name, body = await self._admitted(request)
            service = self.options.service or token_name or "otlp"
            found, rejected, why = rows_of_export(body, media_type, service, export_prefix(body, token_name or ""))
            rows, _dropped = self._processed(found)
            if rows:
                await self._deliver(rows, len(body))
        except (BadExport, BadBody) as exc:
            return status(getattr(exc, "status", 400), str(exc))
        except _Retry as exc:
            return status(exc.status, str(exc), [(b"retry-after", b"%d" % exc.after)])
        except _Unauthorized:
            return status(401, "a valid bearer token is needed", [(b"www-authenticate", b"Bearer")])
        self.accepted_requests += 1
        self.accepted_records += len(rows)
        return _Answer(200, response_body(answer_type, rejected, why), [], answer_type.encode())

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

    async def _read_body(self, request: _Request) -> bytes:
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
        self.inflight_bytes += size
        try:
            await self._waiters.deliver(self.delivery, rows)
        except queue.Full:
            raise _Retry(429, "too many requests await batching", RETRY_BUSY_S) from None
        except _Retry:
            raise
        except Exception as exc:
            raise _Retry(503, f"delivery failed: {exc}", RETRY_BROKER_S) from exc
        finally:
            self.inflight_bytes -= size


UNAUTHORIZED_BODY = b'{"error":"a valid bearer token is needed"}'


@dataclass(slots=True)
class _Answer:
    """A response of the POST routes: status, body, extra headers (lowercase)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    content_type: bytes = b"application/json"


class _Disconnected(Exception):
    """The client left while its body was being read."""


class _Request:
    """What the POST routes read of an ASGI request: its headers (ASGI gives them lowercase) and body."""

    __slots__ = ("_receive", "headers")

    def __init__(self, scope: Any, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in reversed(scope["headers"])}
        self._receive = receive

    async def stream(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            body = message.get("body", b"")
            if body:
                yield body
            if not message.get("more_body", False):
                return


class _Waiters:
    """The requests awaiting their confirms, woken together.

    A confirm that completes many requests' records (they share batches) wakes the event
    loop once for all of them, not once each, and one ticker, not a timer per request,
    bounds every wait: ``ack_timeout_s``, or ``outage_grace_s`` once the broker is seen
    away (its connection gone, or blocking publishers). Such a request is answered 503,
    never 202 without its confirm; its records may still arrive, and a retry with the
    same Idempotency-Key stores them once.
    """

    def __init__(self, options: IntakeOptions, not_ready: Callable[[], str | None]) -> None:
        self.options = options
        self.not_ready = not_ready
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._confirmed: list[tuple[BaseException | None, asyncio.Future[None]]] = []  # from the delivery thread
        self._waiting: dict[asyncio.Future[None], float] = {}  # each request's future and deadline
        self._ticker: asyncio.Task[None] | None = None

    async def deliver(self, delivery: DeliveryThread, rows: list[WireRow]) -> None:
        """Submit ``rows`` and wait for their confirm (or a _Retry of the ticker's)."""
        loop = self._loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        delivery.submit_then(rows, lambda error: self._on_confirm(error, woken))  # queue.Full: not waited for
        self._waiting[woken] = time.monotonic() + self.options.ack_timeout_s
        if self._ticker is None or self._ticker.done():
            self._ticker = loop.create_task(self._tick())
        try:
            await woken
        finally:
            self._waiting.pop(woken, None)

    def _on_confirm(self, error: BaseException | None, woken: asyncio.Future[None]) -> None:
        """In the delivery thread: queue the request to be woken; the first of a round wakes the loop."""
        with self._lock:
            self._confirmed.append((error, woken))
            first = len(self._confirmed) == 1
        if first and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        with self._lock:
            confirmed, self._confirmed = self._confirmed, []
        for error, woken in confirmed:
            if not woken.done():
                if error is None:
                    woken.set_result(None)
                else:
                    woken.set_exception(error)

    async def _tick(self) -> None:
        retry = "retry with the same Idempotency-Key so that nothing is stored twice"
        away_since: float | None = None
        while self._waiting:
            await asyncio.sleep(WAIT_SLICE_S)
            now = time.monotonic()
            reason = self.not_ready()
            away_since = (away_since or now) if reason is not None else None
            for woken, deadline in list(self._waiting.items()):
                if woken.done():
                    continue
                if away_since is not None and now - away_since >= self.options.outage_grace_s:
                    message = f"{reason} while this request waited for its confirm; {retry}"
                    woken.set_exception(_Retry(503, message, RETRY_BROKER_S))
                elif now >= deadline:
                    message = f"the broker did not confirm within {self.options.ack_timeout_s:g} s; {retry}"
                    woken.set_exception(_Retry(503, message, RETRY_BROKER_S))


class _Retry(Exception):
    def __init__(self, status: int, message: str, after: int) -> None:
        super().__init__(message)
        self.status = status
        self.after = after


class _Unauthorized(Exception):
    pass


# --- running it ---------------------------------------------------------------------------------


def _listening_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """``reuse_port``: several processes listen on the port, and the kernel spreads connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it Nagle and delayed ACKs held every keep-alive answer 40 ms (measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    return sock


@dataclass(frozen=True, slots=True)
class IntakeCounts:
    """What an intake (one process of it, or all) answered, for ship's summary."""

    requests: int = 0  # answered 202/200
    records: int = 0  # in those, each confirmed
    refused: int = 0  # answered 4xx or 5xx
    dropped: int = 0  # by the edge options
    redacted: int = 0

    def __add__(self, other: IntakeCounts) -> IntakeCounts:
        return IntakeCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


class IntakeServer:
    """The intake running: its own broker connection, delivery thread and HTTP server thread."""

    def __init__(
        self,
        settings: Settings,
        options: IntakeOptions,
        stop: Callable[[], bool],
        notify: Notify,
        topology: TopologyOnce | None = None,
    ) -> None:
        """``topology``: shared with the other connections of the same ship, declared once."""
        self._topology = topology or TopologyOnce()
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
        self._sock = _listening_socket(options.host, options.port, reuse_port=options.workers > 1)
        self.port = int(self._sock.getsockname()[1])
        self.delivery = DeliveryThread(
            self._make_output,
            RowPacker(settings.serializer),
            batch_size=options.batch_size,
            linger_s=options.linger_s,
            eager=True,
        )
        self.intake = Intake(options, self.delivery, self._broker_state)
        self._server: Any = None
        self._thread = threading.Thread(target=self._serve, name="logctl-intake", daemon=True)

    def start(self, announce: bool = True) -> IntakeServer:
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
        if announce:
            scheme = "https" if self.options.cert_file else "http"
            workers = f" ({self.options.workers} processes)" if self.options.workers > 1 else ""
            self.notify(f"listening on {scheme}://{self.options.host}:{self.port}/api/log{workers}")
        return self

    @property
    def counts(self) -> IntakeCounts:
        intake = self.intake
        redacted = intake.processing.redacted if intake.processing is not None else 0
        return IntakeCounts(
            intake.accepted_requests, intake.accepted_records, intake.refused_requests, intake.dropped_records, redacted
        )

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
        return open_publisher(self.broker, self._topology, confirm, self._stop)  # type: ignore[no-any-return]

    def _broker_state(self) -> str | None:
        if not self.broker.connected:
            return "not connected to the broker"
        if self.broker.blocked:
            return "the broker blocks publishing (memory or disk alarm)"
        return None
