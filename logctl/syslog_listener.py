"""``ship --syslog URL``: syslog from the network (UDP, TCP, TLS) onto the delivery path.

Each listener runs in one asyncio loop in a thread of its own, beside the files ship
follows. A message becomes a record through ship's own line parser (RFC 5424 and RFC
3164 are among the formats it detects): the level from the PRI's severity, the service
from APP-NAME or the tag, the host and the structured data into attrs, and the peer's
address as ``log.source.address``. Records go through the edge options, then to a
``DeliveryThread`` (its own broker connection), which batches and confirms them.

What each transport can promise (the README says it to users):

- UDP has no flow control: a datagram the kernel's buffer had no room for is lost
  before logctl sees it. The socket asks for a 4 MiB buffer, and the kernel's own count
  of drops for the socket (``/proc/net/udp``) is reported at exit. A datagram read while
  the delivery queue is full is dropped and counted.
- TCP and TLS have flow control but no application ack: logctl stops reading a
  connection while its records wait for confirms (so a client is slowed, not dropped,
  when the broker is slow or away), and at a clean stop every message read is confirmed
  before exit. What the client wrote that logctl had not read, or read but the broker
  had not confirmed, when ship is killed is lost, and the client cannot know.

Framing (RFC 6587) is detected per connection from its first byte: a digit means octet
counting (``LEN SP MSG``), anything else newline-terminated messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import socket
import ssl
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from logctl import metrics
from logctl.codec import RowPacker
from logctl.config import Settings
from logctl.delivery import DeliveryThread, Output
from logctl.errors import ConfigError
from logctl.parsing import LineParser
from logctl.parsing.fields import SYSLOG_SEVERITY
from logctl.processing import NO_PROCESSING, ProcessingOptions, processing_of
from logctl.records import WireRow, source_prefix
from logctl.transport import Broker, TopologyOnce, open_publisher

Notify = Callable[[str], None]

MAX_MESSAGE_BYTES = 64 << 10  # RFC 5425 asks receivers for 8 KiB at least; a UDP datagram holds 64 KiB
MAX_CONNECTIONS = 1000
FRAME_TIMEOUT_S = 30.0  # a connection that leaves a message unfinished this long is closed
UDP_BUFFER_BYTES = 4 << 20
PENDING_PER_CONNECTION = 8  # submits of one connection awaiting confirms before it is read again
FLAG_INVALID_UTF8 = "logctl.invalid_utf8"


@dataclass(frozen=True, slots=True)
class SyslogEndpoint:
    """One ``--syslog`` URL: ``udp://HOST:PORT``, ``tcp://HOST:PORT`` or ``tls://HOST:PORT``."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_endpoint(url: str) -> SyslogEndpoint:
    """A ``--syslog`` URL; a clear ConfigError for anything else."""
    parts = urlsplit(url)
    transport = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if transport not in ("udp", "tcp", "tls") or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ConfigError(f"--syslog {url!r}: write udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
    return SyslogEndpoint(transport, parts.hostname, port)


@dataclass(frozen=True, slots=True)
class SyslogOptions:
    endpoints: tuple[SyslogEndpoint, ...]
    service: str = "syslog"  # for messages that name no APP-NAME or tag
    processing: ProcessingOptions = NO_PROCESSING
    cert_file: str | None = None  # tls:// needs both
    key_file: str | None = None
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_connections: int = MAX_CONNECTIONS
    frame_timeout_s: float = FRAME_TIMEOUT_S
    batch_size: int = 2048
    linger_s: float = 0.05


@dataclass(slots=True)
class SyslogStats:
    messages: int = 0  # taken in and handed to delivery
    dropped: int = 0  # by the edge options
    udp_overflow: int = 0  # datagrams read while the delivery queue was full
    closed_connections: int = 0  # connections closed for a protocol error, a size or a timeout
    refused_connections: int = 0  # over max_connections
    kernel_drops: int = 0  # UDP datagrams the kernel dropped (from /proc/net/udp), at exit


class _Frames:
    """Cuts a TCP stream into messages: octet counting or newline framing, chosen by the first byte."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.octet_counting: bool | None = None
        self.buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The complete messages ``data`` completes; ValueError (a reason) for a stream that breaks the framing."""
        self.buffer += data
        if self.octet_counting is None and self.buffer:
            self.octet_counting = self.buffer[:1].isdigit()
        return self._counted() if self.octet_counting else self._lines()

    def _lines(self) -> list[bytes]:
        *whole, rest = self.buffer.split(b"\n")
        if len(rest) > self.max_bytes:
            raise ValueError(f"a message over {self.max_bytes} bytes with no newline")
        self.buffer = rest
        return [line.rstrip(b"\r\x00") for line in whole if line.strip(b"\r\x00 ")]

    def _counted(self) -> list[bytes]:
        frames, buf, pos = [], self.buffer, 0
        while pos < len(buf):
            space = buf.find(b" ", pos, pos + 12)
            if space < 0:
                if len(buf) - pos >= 12 or not buf[pos:].isdigit():
                    raise ValueError(f"not an octet count: {bytes(buf[pos : pos + 20])!r}")
                break
            length = buf[pos:space]
            if not length.isdigit() or length.startswith(b"0"):
                raise ValueError(f"not an octet count: {bytes(buf[pos : pos + 20])!r}")
            size = int(length)
            if size > self.max_bytes:
                raise ValueError(f"a message of {size} bytes, over the limit of {self.max_bytes}")
            if len(buf) < space + 1 + size:
                break
            frames.append(buf[space + 1 : space + 1 + size].rstrip(b"\n\r\x00"))
            pos = space + 1 + size
        self.buffer = buf[pos:]
        return frames

    @property
    def partial(self) -> bool:
        return bool(self.buffer)


# An RFC 3164 header whose TAG a space ends, not a colon or a [pid].
_TAG_ENDED_BY_SPACE = re.compile(r"(<\d{1,3}>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [A-Za-z0-9_\-./]{1,48})(?= )")


class MessageReader:
    """Syslog messages into records, with ids unique to this run (syslog has no offsets to resume from)."""

    def __init__(self, service: str) -> None:
        prefix = source_prefix(b"syslog:" + uuid.uuid4().bytes)
        self._parser = LineParser(prefix, service)
        self._count = 0

    def record(self, raw: bytes, peer: str) -> WireRow:
        try:
            text = raw.decode("utf-8")
            flags = None
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            flags = {FLAG_INVALID_UTF8: True}
        first, _, rest = text.partition("\n")
        tagged = _TAG_ENDED_BY_SPACE.match(first)
        if tagged is not None:  # RFC 3164: a space ends the TAG too (rsyslog forwards RFC 5424 APP-NAMEs so)
            first = f"{tagged.group(1)}:{first[tagged.end(1) :]}"
        start = self._count
        self._count += 1
        self._parser.feed(first, start, start + 1, flags)
        row = self._parser.flush()
        assert row is not None
        if rest:  # one message is one record, whatever its other lines look like
            row[4] = f"{row[4]}\n{rest}".rstrip()  # type: ignore[index]
        return _syslog_fields(row, first, peer)


def _syslog_fields(row: Any, first_line: str, peer: str) -> WireRow:
    """What the parser left to syslog: a PRI in front of no header it knows, the structured data, the peer."""
    attrs = row[6]
    if "facility" not in attrs and first_line.startswith("<"):
        end = first_line.find(">", 1, 5)
        pri = first_line[1:end] if end > 0 else ""
        if pri.isdigit() and int(pri) <= 191:
            row[2] = SYSLOG_SEVERITY[int(pri) & 7]
            attrs["facility"] = int(pri) // 8
            row[4] = row[4][end + 1 :] if row[4].startswith(first_line[: end + 1]) else row[4]
    sd = attrs.get("sd")
    if isinstance(sd, str):
        parsed = structured_data(sd)
        if parsed is not None:
            attrs["sd"] = parsed
    if row[4].startswith("\ufeff"):  # RFC 5424's BOM before a UTF-8 MSG
        row[4] = row[4][1:]
    attrs["log.source.address"] = peer
    return row  # type: ignore[no-any-return]


def structured_data(text: str) -> dict[str, dict[str, str]] | None:
    """RFC 5424 STRUCTURED-DATA (``[id k="v" ...][id2 ...]``) as ``{id: {k: v}}``; None if it is not that."""
    found: dict[str, dict[str, str]] = {}
    pos = 0
    while pos < len(text):
        if text[pos] != "[":
            return None
        pos += 1
        end = pos
        while end < len(text) and text[end] not in " ]":
            end += 1
        sd_id, params = text[pos:end], {}
        pos = end
        while pos < len(text) and text[pos] == " ":
            eq = text.find('="', pos)
            if eq < 0:
                return None
            name, value, pos = text[pos + 1 : eq], [], eq + 2
            while pos < len(text) and text[pos] != '"':
                if text[pos] == "\\" and pos + 1 < len(text) and text[pos + 1] in '"\\]':
                    pos += 1
                value.append(text[pos])
                pos += 1
            params[name] = "".join(value)
            pos += 1
        if pos >= len(text) or text[pos] != "]" or not sd_id:
            return None
        found[sd_id] = params
        pos += 1
    return found


def udp_kernel_drops(port: int) -> int | None:
    """Datagrams the kernel dropped for the UDP socket on ``port`` (the ``drops`` column of /proc/net/udp)."""
    total, seen = 0, False
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    columns = line.split()
                    if int(columns[1].rsplit(":", 1)[1], 16) == port:
                        total += int(columns[-1])
                        seen = True
        except (OSError, ValueError, IndexError, StopIteration):
            continue
    return total if seen else None


class SyslogServer:
    """The listeners of ``--syslog``: their own broker connection, delivery thread and event loop thread."""

    def __init__(
        self,
        settings: Settings,
        options: SyslogOptions,
        stop: Callable[[], bool],
        notify: Notify,
        topology: TopologyOnce | None = None,
    ) -> None:
        """``topology``: shared with the other connections of the same ship, declared once."""
        self._topology = topology or TopologyOnce()
        if any(e.transport == "tls" for e in options.endpoints) and not (options.cert_file and options.key_file):
            raise ConfigError("--syslog tls://... needs --tls-cert-file and --tls-key-file")
        self.settings = settings
        self.options = options
        self.notify = notify
        self.stats = SyslogStats()
        self.processing = processing_of(options.processing)
        self._stop = stop
        self._reader = MessageReader(options.service)
        self.broker = Broker(settings, notify)
        self.delivery = DeliveryThread(
            self._make_output,
            RowPacker(settings.serializer),
            batch_size=options.batch_size,
            linger_s=options.linger_s,
            component="syslog",
        )
        self._loop = asyncio.new_event_loop()
        self._closers: list[Callable[[], None]] = []
        self._connections: set[asyncio.StreamWriter] = set()
        self._udp_ports: list[int] = []
        self.bound: list[SyslogEndpoint] = []  # the endpoints with the ports the kernel gave (for port 0)
        self._thread = threading.Thread(target=self._loop.run_forever, name="logctl-syslog", daemon=True)

    def start(self) -> SyslogServer:
        """Bind every endpoint (a ConfigError if one cannot be), then serve in the loop's thread."""
        try:
            for endpoint in self.options.endpoints:
                self.bound.append(self._loop.run_until_complete(self._open(endpoint)))
        except OSError as exc:
            self._loop.run_until_complete(self._close_listeners())
            self.delivery.close(0)
            raise ConfigError(f"cannot listen on {endpoint}: {exc.strerror}") from exc
        self._thread.start()
        for bound in self.bound:
            self.notify(f"listening for syslog on {bound}")
        return self

    def close(self, timeout: float) -> bool:
        """Stop listening, close the connections, then flush: False if confirms are missing."""
        future = asyncio.run_coroutine_threadsafe(self._close_listeners(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        for port in self._udp_ports:
            self.stats.kernel_drops += udp_kernel_drops(port) or 0
        flushed = self.delivery.close(timeout)
        self.broker.close()
        return flushed

    # --- in the loop's thread ------------------------------------------------------------------

    async def _open(self, endpoint: SyslogEndpoint) -> SyslogEndpoint:
        if endpoint.transport == "udp":
            sock = socket.socket(socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER_BYTES)
            sock.bind((endpoint.host, endpoint.port))
            transport, _ = await self._loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=sock)
            self._closers.append(transport.close)
            port = int(sock.getsockname()[1])
            self._udp_ports.append(port)
        else:
            context = None
            if endpoint.transport == "tls":
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(str(self.options.cert_file), str(self.options.key_file))
            server = await asyncio.start_server(
                self._serve_connection, endpoint.host, endpoint.port, ssl=context, limit=self.options.max_message_bytes
            )
            self._closers.append(server.close)
            port = int(server.sockets[0].getsockname()[1])
        return SyslogEndpoint(endpoint.transport, endpoint.host, port)

    async def _close_listeners(self) -> None:
        for close in self._closers:
            close()
        for writer in list(self._connections):
            writer.close()
        await asyncio.sleep(0)

    def take(self, raws: list[bytes], peer: str) -> Future[None] | None:
        """Messages in: records, processed, submitted; the future of their confirm (None if none went).

        Raises queue.Full when the delivery queue is full (the caller waits or drops).
        """
        rows = [self._reader.record(raw, peer) for raw in raws]
        if self.processing is not None:
            kept = self.processing.kept(rows)
            dropped = len(rows) - len(kept)
            if dropped:
                self.stats.dropped += dropped
                metrics.METRICS.dropped("syslog", dropped)
            rows = kept
        if not rows:
            return None
        future = self.delivery.submit(rows)
        self.stats.messages += len(rows)
        return future

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer_of(writer.get_extra_info("peername"))
        if len(self._connections) >= self.options.max_connections:
            self.stats.refused_connections += 1
            self.notify(f"syslog: refusing {peer}: {self.options.max_connections} connections are open already")
            writer.close()
            return
        self._connections.add(writer)
        frames = _Frames(self.options.max_message_bytes)
        pending: list[Future[None]] = []
        try:
            while True:
                timeout = self.options.frame_timeout_s if frames.partial else None
                try:
                    data = await asyncio.wait_for(reader.read(1 << 16), timeout)
                except TimeoutError:
                    raise ValueError(f"a message left unfinished for {self.options.frame_timeout_s:g}s") from None
                if not data:
                    break
                messages = frames.feed(data)
                if messages:
                    await self._submit_waiting(messages, peer, pending)
        except ValueError as exc:
            self.stats.closed_connections += 1
            self.notify(f"syslog: closing the connection from {peer}: {exc}")
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            self.notify(f"syslog: the connection from {peer} failed: {exc}")
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _submit_waiting(self, messages: list[bytes], peer: str, pending: list[Future[None]]) -> None:
        """Submit, reading no more from the connection while too many of its submits await confirms."""
        while True:
            pending[:] = [f for f in pending if not f.done()]
            if len(pending) >= PENDING_PER_CONNECTION:
                await asyncio.wait([asyncio.wrap_future(pending[0])], timeout=1.0)
                continue
            try:
                future = self.take(messages, peer)
            except queue.Full:
                await asyncio.sleep(0.05)
                continue
            if future is not None:
                pending.append(future)
            return

    def _make_output(self, confirm: Callable[[object], None]) -> Output:
        return open_publisher(self.broker, self._topology, confirm, self._stop)  # type: ignore[no-any-return]


class _Datagrams(asyncio.DatagramProtocol):
    """UDP: each datagram is one message (RFC 5426)."""

    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        message = data.rstrip(b"\n\r\x00")
        if not message:
            return
        try:
            self.server.take([message], _peer_of(addr))
        except queue.Full:
            self.server.stats.udp_overflow += 1


def _peer_of(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
        return f"{host}:{addr[1]}"
    return str(addr)
