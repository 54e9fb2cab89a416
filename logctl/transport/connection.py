"""Connections: ``Broker`` and its one connection policy; ``translate`` maps errors.

Every command connects, notices a dead connection, backs off, reconnects and revives
its channels here, the way kombu's ``ensure``/``revive`` would: ``connect`` (bounded
retries, or waiting for the broker), ``reconnect`` (until told to stop) and ``recover``
(after a lost connection: say so, reconnect, revive). The publisher, the consumer and
ship all go through them, so a list of brokers needs handling in this one place.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import amqp
import amqp.exceptions
import kombu

from logctl import metrics
from logctl.config import Settings, mask_url
from logctl.errors import AuthError, BrokerError, BrokerUnreachable, Conflict, LogctlError, NotFound, PermissionDenied

Notify = Callable[[str], None]
CONNECT_BACKOFF_MAX = 10.0  # between the bounded first attempts
RECONNECT_BACKOFF_MAX = 30.0  # between attempts that go on until told to stop
FIRST_BACKOFF = 0.5
SLOW_CONNECT_S = 1.0  # a connect still going after this long is announced


def preload() -> None:
    """Import now, in this thread, what the first connection would import lazily.

    For code that may fork while another thread connects (a logging handler under
    gunicorn): a fork in the middle of an import leaves the child a module lock that
    no thread of its own will ever release, and its first connection hangs.
    """
    import encodings.idna  # what getaddrinfo imports for a host name

    import kombu.connection
    import kombu.entity
    import kombu.transport.pyamqp

    _ = (kombu.connection.Connection, kombu.entity.Exchange, kombu.transport.pyamqp.Transport, encodings.idna)


def backoff(first: float, most: float) -> Iterator[float]:
    """Delays that double from ``first`` up to ``most``."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, most)


def _quiet(_message: str) -> None:
    return None


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"


# The permission (RabbitMQ's configure/write/read) each refused AMQP method needs.
_PERMISSION_OF_METHOD = {
    "Exchange.declare": "configure",
    "Exchange.delete": "configure",
    "Queue.declare": "configure",
    "Queue.delete": "configure",
    "Queue.bind": "write on the queue and read on the exchange",
    "Queue.unbind": "write on the queue and read on the exchange",
    "Basic.publish": "write",
    "Basic.consume": "read",
    "Basic.get": "read",
    "Queue.purge": "read",
}


def _refused_operation(exc: amqp.exceptions.AccessRefused, where: str, user: str, vhost: str) -> PermissionDenied:
    method = str(getattr(exc, "method_name", "") or "")
    needed = _PERMISSION_OF_METHOD.get(method, "more")
    return PermissionDenied(
        f"broker at {where} refused {method or 'an operation'} for user {user!r} in vhost {vhost!r}: "
        f"{exc.reply_text} ({needed} permission needed; an administrator grants it with rabbitmqctl set_permissions)"
    )


def tls_options(settings: Settings, url: str | None = None) -> dict[str, Any] | None:
    """py-amqp's TLS options for an amqps:// ``url`` (the first broker's by default; None for
    amqp://): verified unless ``insecure``."""
    parts = urlsplit(url or settings.primary_url)
    if parts.scheme != "amqps":
        return None
    options: dict[str, Any] = {"cert_reqs": ssl.CERT_NONE if settings.insecure else ssl.CERT_REQUIRED}
    if not settings.insecure:
        options["server_hostname"] = parts.hostname or "localhost"
    ca = settings.ca_file or ssl.get_default_verify_paths().openssl_cafile
    if ca and not settings.insecure:
        options["ca_certs"] = ca
    if settings.cert_file:
        options["certfile"] = settings.cert_file
        options["keyfile"] = settings.key_file or None
    return options


def translate(exc: BaseException, url: str) -> LogctlError:
    """Return the LogctlError an operator should see for a kombu/amqp/socket exception."""
    where = _where(url)
    user = urlsplit(url).username or "guest"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return BrokerUnreachable(
            f"TLS to {where}: the broker's certificate is not trusted ({exc.verify_message}): "
            "give its CA with --ca-file, or --insecure to skip the check"
        )
    if isinstance(exc, ssl.SSLError):
        return BrokerUnreachable(f"TLS to {where} failed: {exc.reason or exc}")
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return BrokerUnreachable(f"cannot open the TLS file {exc.filename}: {exc.strerror}")
    if isinstance(exc, amqp.exceptions.AccessRefused) and "Login was refused" not in str(exc.reply_text):
        return _refused_operation(exc, where, user, urlsplit(url).path[1:] or "/")
    if isinstance(exc, amqp.exceptions.AccessRefused):
        return AuthError(
            f"broker at {where} refused the login for user {user!r}: check the password in --url/LOGCTL_URL"
        )
    if isinstance(exc, amqp.exceptions.NotAllowed):
        vhost = urlsplit(url).path[1:] or "/"
        return AuthError(f"broker at {where} does not let {user!r} into vhost {vhost!r}: does it exist?")
    if isinstance(exc, amqp.exceptions.NotFound):
        return NotFound(f"broker at {where}: {exc.reply_text}")
    if isinstance(exc, amqp.exceptions.PreconditionFailed):
        return Conflict(
            f"broker at {where} refused a declaration: {exc.reply_text} (it exists with other arguments: "
            "use it under another name, or have its owner delete it)"
        )
    if isinstance(exc, amqp.exceptions.InternalError) and "nodedown" in str(exc.reply_text):
        # a cluster node answering for a queue whose leader just died (541 ... nodedown):
        # it closed this connection, and one opened after the election works again
        return BrokerUnreachable(f"lost the connection to {where}: {exc.reply_text}")
    if isinstance(exc, amqp.exceptions.RecoverableConnectionError):
        # CONNECTION_FORCED (a broker shutting down, an operator's close_connection) and
        # the like: the connection is gone but a new one may work, as after a dropped socket.
        return BrokerUnreachable(f"lost the connection to {where}: {exc}")
    if isinstance(exc, amqp.exceptions.AMQPError):
        return BrokerError(f"broker at {where}: {exc}")
    if isinstance(exc, socket.gaierror):
        return BrokerUnreachable(f"cannot resolve broker host in {mask_url(url)}: {exc.strerror}")
    if isinstance(exc, ConnectionRefusedError):
        return BrokerUnreachable(f"cannot reach broker at {where}: connection refused (is RabbitMQ running?)")
    if isinstance(exc, TimeoutError | socket.timeout):
        return BrokerUnreachable(f"cannot reach broker at {where}: timed out")
    if isinstance(exc, OSError | ConnectionError):
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return BrokerUnreachable(f"lost or could not open the connection to {where}: {reason}")
    return BrokerError(f"broker at {where}: {type(exc).__name__}: {exc}")


CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ConnectionError,
    amqp.exceptions.RecoverableConnectionError,
    amqp.exceptions.ConnectionForced,
    amqp.exceptions.ConnectionError,
)


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Turn kombu/amqp/socket exceptions raised inside the block into LogctlErrors."""
    try:
        yield
    except LogctlError:
        raise
    except (amqp.exceptions.AMQPError, OSError, ConnectionError) as exc:
        raise translate(exc, url) from exc


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message taken from a queue, in our terms."""

    body: bytes
    content_type: str | None
    message_id: str | None
    delivery_tag: int
    routing_key: str
    exchange: str
    redelivered: bool
    headers: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)


# py-amqp sets TCP_USER_TIMEOUT to 1 s: the kernel then drops a connection whose data the
# broker has not read for a second, which is what a broker blocking publishers (memory or
# disk alarm) does, so ship reconnected every 1.3 s for as long as an alarm lasted. A
# minute still bounds a send to a broker that vanished (heartbeats may be off).
_SOCKET_SETTINGS = {getattr(socket, "TCP_USER_TIMEOUT", 18): 60_000}


class Broker:
    """One AMQP connection, to the first of the settings' brokers that answers.

    Use as a context manager; it never outlives the command. With several brokers (a
    failover URL), each attempt tries them in turn, starting after the one just lost,
    so a dead node costs one refused connection (or one connect timeout, if it hangs).
    """

    def __init__(self, settings: Settings, notify: Notify = _quiet) -> None:
        self.settings = settings
        self.notify = notify
        self.blocked = False
        self._conn: kombu.Connection | None = None
        self._urls = settings.urls
        self._current = 0  # index into _urls of the broker connected to (or last tried)
        self._ever_connected = False

    @property
    def url(self) -> str:
        """The URL of the broker this connection is (or was last) to."""
        return self._urls[self._current]

    @property
    def where(self) -> str:
        """host:port of the broker this connection is (or was last) to."""
        return _where(self.url)

    def __enter__(self) -> Broker:
        self.connect(self.settings.connect_retries)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def connect(self, retries: int, *, wait: bool = False, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Open the connection, retrying ``retries`` times with backoff; auth failures are final.

        With ``wait``, a broker still down after those is waited for (one notice), as a
        following ship started before its broker does.
        """
        # A connect that takes a while (a silent host, a slow TLS handshake) says what it waits for.
        slow = threading.Timer(SLOW_CONNECT_S, lambda: self.notify(f"connecting to {self.where} ..."))
        slow.daemon = True
        slow.start()
        try:
            self._connect(retries, on_retry=slow.cancel)  # a retry notice says it already
        except BrokerUnreachable as exc:
            if not wait:
                raise
            self.notify(f"{exc}; waiting for it (Ctrl-C to stop)")
            self.reconnect(should_stop)
            self.notify("connected to broker")
        finally:
            slow.cancel()

    def _connect(self, retries: int, on_retry: Callable[[], None] = lambda: None) -> None:
        """``retries + 1`` rounds over the brokers, backing off between rounds, each retry said."""
        delays = backoff(FIRST_BACKOFF, CONNECT_BACKOFF_MAX)
        for attempt in range(retries + 1):
            try:
                self._connect_round()
                return
            except BrokerUnreachable as exc:
                if attempt == retries:
                    raise
                delay = next(delays)
                on_retry()
                self.notify(f"{exc}; retrying in {delay:g}s ({attempt + 1} of {retries} retries)")
                time.sleep(delay)

    def _connect_round(self) -> None:
        """Try each broker once, from the one after the last used (the first, at the start)."""
        count = len(self._urls)
        start = (self._current + 1) % count if self._ever_connected else 0
        failures: list[LogctlError] = []
        for index in [(start + step) % count for step in range(count)]:
            try:
                self._conn = self._open(self._urls[index])
            except BrokerUnreachable as exc:
                failures.append(exc)
                continue
            moved = self._ever_connected and index != self._current
            self._current, self._ever_connected, self.blocked = index, True, False
            if moved:
                metrics.METRICS.error("failover", "broker")
                self.notify(f"connected to broker at {self.where} (failover)")
            return
        if count == 1:
            raise failures[0]
        raise BrokerUnreachable(f"none of the {count} brokers answered: " + "; ".join(map(str, failures)))

    def _open(self, url: str) -> kombu.Connection:
        conn = kombu.Connection(
            url,
            ssl=tls_options(self.settings, url),
            connect_timeout=self.settings.connect_timeout,
            heartbeat=self.settings.heartbeat,
            transport_options={
                "on_blocked": self._on_blocked,
                "on_unblocked": self._on_unblocked,
                "socket_settings": _SOCKET_SETTINGS,
            },
        )
        try:
            # One attempt: kombu's connect() retries once more after 2 s of its own, which
            # doubled every wait and hid why (logctl's rounds and backoff do the retrying).
            conn.ensure_connection(max_retries=0, reraise_as_library_errors=False)
        except (*CONNECTION_ERRORS, amqp.exceptions.AMQPError) as exc:
            conn.release()
            raise translate(exc, url) from exc  # an auth failure is a final AuthError, not BrokerUnreachable
        return conn

    def reconnect(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Reconnect after a lost connection, backing off up to 30 s; never gives up on its own.

        Auth failures are final; ``should_stop()`` turns the next failed attempt into an error.
        """
        for delay in backoff(FIRST_BACKOFF, RECONNECT_BACKOFF_MAX):
            self.close()
            try:
                self._connect(retries=0)
                return
            except BrokerUnreachable:
                if should_stop():
                    raise
                time.sleep(delay)

    def recover(
        self, lost: BaseException, should_stop: Callable[[], bool], revive: Callable[[], None] = lambda: None
    ) -> None:
        """After a lost connection: say so, reconnect (see ``reconnect``), then ``revive`` the caller's channels."""
        reason = lost if isinstance(lost, LogctlError) else type(lost).__name__
        metrics.METRICS.error("connection_lost", "broker")
        self.notify(f"connection to broker lost ({reason}); reconnecting")
        self.reconnect(should_stop)
        revive()

    def close(self) -> None:
        """Close the connection, ignoring errors of a connection already gone."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                if self.blocked:  # a broker blocking us reads nothing: a close handshake would wait for ever
                    self._conn.collect()
                else:
                    self._conn.release()
            self._conn = None

    @property
    def connected(self) -> bool:
        """Whether a connection is open now (False while connecting or reconnecting)."""
        return self._conn is not None

    @property
    def connection(self) -> kombu.Connection:
        if self._conn is None:
            raise BrokerUnreachable(f"not connected to {self.where}")
        return self._conn

    def channel(self) -> Any:
        """Return a new py-amqp channel on this connection."""
        with translated(self.url):
            return self.connection.channel()

    def drain(self, timeout: float) -> bool:
        """Process incoming frames for up to ``timeout`` seconds; False if nothing came."""
        conn = self.connection
        try:
            conn.drain_events(timeout=timeout)
        except TimeoutError:
            conn.heartbeat_check()
            return False
        return True

    def _on_blocked(self, reason: str) -> None:
        self.blocked = True
        self.notify(f"broker blocked publishing ({reason}); waiting")

    def _on_unblocked(self) -> None:
        self.blocked = False
        self.notify("broker unblocked publishing; resuming")
