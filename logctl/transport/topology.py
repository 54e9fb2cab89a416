"""Topology: the exchanges and queues logctl declares."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import amqp.exceptions
import kombu

from logctl.config import Settings
from logctl.errors import NotFound, PermissionDenied
from logctl.transport.connection import Broker, translate, translated

# Names derived from the main exchange (``logs`` by default).
UNROUTED_SUFFIX = ".unrouted"
DLX_SUFFIX = ".dlx"
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class Topology:
    """The exchanges and queues logctl relies on, named after the main exchange.

    ``default_queue`` (bound to ``#``) is where records wait for ``logctl consume`` when
    nobody declared another queue; ``None`` leaves it out.
    """

    exchange: str
    default_queue: str | None = None

    @property
    def unrouted_exchange(self) -> str:
        return self.exchange + UNROUTED_SUFFIX

    @property
    def unrouted_queue(self) -> str:
        return self.exchange + UNROUTED_SUFFIX

    @property
    def dead_letter_exchange(self) -> str:
        return self.exchange + DLX_SUFFIX

    @property
    def dead_letter_queue(self) -> str:
        return self.exchange + DLQ_SUFFIX


@contextlib.contextmanager
def _channel(broker: Broker) -> Iterator[Any]:
    """A channel of its own for one operation (a failed passive declare closes it), then closed."""
    with translated(broker.url):
        channel = broker.channel()
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):  # the channel may already be closed by the broker
                channel.close()


def declare_topology(broker: Broker, topology: Topology, *, rebind_default: bool = False) -> None:
    """Make sure the main exchange exists, declaring logctl's topology where it may.

    With ``settings.declare`` off nothing is declared: the exchange is checked passively.
    Otherwise the alternate-exchange pair, the main topic exchange and the dead-letter pair
    are declared. An exchange someone else declared with other arguments is used as it is
    (with one warning of what that costs), and a user without configure permission falls
    back to the topology as it stands.
    """
    if not broker.settings.declare:
        require_exchange(broker, topology.exchange)
        return
    try:
        _declare_all(broker, topology, rebind_default)
    except _Refused as refused:
        if not exchange_exists(broker, topology.exchange):
            raise translate(refused.error, broker.url) from refused.error
        _warn_once(
            broker,
            f"user {_user(broker)!r} may not declare {refused.what} ({refused.error.reply_text}); "
            "using the topology as it stands (--no-declare skips declaring)",
        )


class TopologyOnce:
    """The topology declared once for the connections of one ship (its files, intake, syslog).

    Each connection declares on connecting; with one of these the first declares and the
    others wait until it is done. Otherwise one could find the default queue declared but
    not yet bound (a queue and its binding are two steps), skip it, and publish into the
    alternate exchange: records confirmed, but in the unrouted queue.

    ``marker`` (a file in ship's state dir) closes the same gap across a kill: it exists
    while ship declares, so a ship killed between declaring the default queue and binding
    it leaves it behind, and the next ship of that state dir binds the queue again.
    """

    def __init__(self, marker: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._marker = marker

    def declare(self, broker: Broker, topology: Topology) -> None:
        with self._lock:
            if self._done:
                return
            marker = self._marker
            interrupted = marker is not None and marker.exists()
            if marker is not None:
                with contextlib.suppress(OSError):
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.write_text(f"declaring {topology.exchange}\n")
            declare_topology(broker, topology, rebind_default=interrupted)
            if marker is not None:
                with contextlib.suppress(OSError):
                    marker.unlink(missing_ok=True)
            self._done = True


def open_publisher(
    broker: Broker, topology: TopologyOnce, confirm: Callable[[object], None], stop: Callable[[], bool]
) -> Any:
    """Connect (waiting for the broker), declare (once per ship) and make a mandatory Publisher:
    a delivery thread's output, as the intake and the syslog listener make it."""
    from logctl.transport.publisher import Publisher

    settings = broker.settings
    broker.connect(settings.connect_retries, wait=True, should_stop=stop)
    topology.declare(broker, topology_of(settings))
    return Publisher(broker, settings.exchange, confirm, settings.max_in_flight, should_stop=stop, mandatory=True)


class _Refused(Exception):
    def __init__(self, what: str, error: amqp.exceptions.AccessRefused) -> None:
        super().__init__(what)
        self.what = what
        self.error = error


def _declare_all(broker: Broker, topology: Topology, rebind_default: bool = False) -> None:
    quorum = {"x-queue-type": "quorum"}
    unrouted = kombu.Exchange(topology.unrouted_exchange, "fanout", durable=True)
    _use_or_declare(broker, f"exchange {unrouted.name!r}", unrouted.declare)
    unrouted_queue = kombu.Queue(topology.unrouted_queue, unrouted, durable=True, queue_arguments=quorum)
    _use_or_declare(
        broker, f"queue {unrouted_queue.name!r}", unrouted_queue.declare, binding=(unrouted_queue.name, unrouted.name)
    )
    main = kombu.Exchange(
        topology.exchange, "topic", durable=True, arguments={"alternate-exchange": topology.unrouted_exchange}
    )
    mismatch = _declare(broker, f"exchange {main.name!r}", main.declare, tolerate_mismatch=True)
    if mismatch is not None:
        _warn_once(
            broker,
            f"exchange {topology.exchange!r} exists with other arguments than logctl's ({mismatch}); using it as "
            "it is. Without logctl's alternate exchange the broker would drop records no queue is bound for: ship "
            "holds them unconfirmed and retries until a queue is bound. To keep them in "
            f"{topology.unrouted_queue!r} instead: logctl policy apply unrouted-ae",
        )
    dlx = kombu.Exchange(topology.dead_letter_exchange, "fanout", durable=True)
    _use_or_declare(broker, f"exchange {dlx.name!r}", dlx.declare)
    dlq = kombu.Queue(topology.dead_letter_queue, dlx, durable=True, queue_arguments=quorum)
    _use_or_declare(broker, f"queue {dlq.name!r}", dlq.declare, binding=(dlq.name, dlx.name))
    if topology.default_queue and not queue_exists(broker, topology.default_queue):
        with _refusable(f"queue {topology.default_queue!r}"):
            declare_consumer_queue(broker, topology, topology.default_queue, ("#",))
    elif topology.default_queue and rebind_default:  # an earlier declaration was cut off (TopologyOnce)
        with _refusable(f"queue {topology.default_queue!r}"):
            bind_queue(broker, topology.default_queue, topology.exchange, "#")


def _use_or_declare(
    broker: Broker, what: str, declare: Callable[..., Any], *, binding: tuple[str, str] | None = None
) -> None:
    """Declare one of logctl's own; one that exists with other arguments is used as it is, with a warning.

    A queue used as it is still gets its ``binding`` (queue, exchange), which the failed
    declaration would have made: without it, what the exchange receives would be dropped.
    """
    mismatch = _declare(broker, what, declare, tolerate_mismatch=True)
    if mismatch is None:
        return
    _warn_once(broker, f"{what} exists with other arguments than logctl's ({mismatch}); using it as it is")
    if binding is not None:
        with _refusable(what), _channel(broker) as channel:
            channel.queue_bind(*binding, "")


def _declare(broker: Broker, what: str, declare: Callable[..., Any], *, tolerate_mismatch: bool = False) -> str | None:
    """Run one declaration on a channel of its own (a refusal closes the channel).

    Returns the broker's reason when ``tolerate_mismatch`` and the thing exists with other
    arguments; raises _Refused when the user may not declare it.
    """
    with _refusable(what), _channel(broker) as channel:
        try:
            declare(channel=channel)
        except amqp.exceptions.PreconditionFailed as exc:
            if not tolerate_mismatch:
                raise
            return str(exc.reply_text)
    return None


@contextlib.contextmanager
def _refusable(what: str) -> Iterator[None]:
    """Turn a refused declaration (raw, or translated already) into _Refused."""
    try:
        yield
    except amqp.exceptions.AccessRefused as exc:
        raise _Refused(what, exc) from exc
    except PermissionDenied as exc:
        if isinstance(exc.__cause__, amqp.exceptions.AccessRefused):
            raise _Refused(what, exc.__cause__) from exc
        raise


_warned: set[str] = set()


def _warn_once(broker: Broker, message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        broker.notify(message)


def _user(broker: Broker) -> str:
    return urlsplit(broker.settings.primary_url).username or "guest"


def _vhost(broker: Broker) -> str:
    return urlsplit(broker.settings.primary_url).path[1:] or "/"


def require_exchange(broker: Broker, exchange: str) -> None:
    """NotFound, naming who can fix it, unless ``exchange`` exists (a passive check)."""
    if not exchange_exists(broker, exchange):
        raise NotFound(
            f"exchange {exchange!r} does not exist in vhost {_vhost(broker)!r} and --no-declare forbids creating it: "
            "a user with configure permission can create it by running logctl once without --no-declare"
        )


def declare_consumer_queue(
    broker: Broker, topology: Topology, queue: str, patterns: Sequence[str], *, queue_type: str = "quorum"
) -> None:
    """Declare a durable consumer queue, dead-lettering to the DLX, bound by ``patterns``."""
    arguments: dict[str, Any] = {"x-queue-type": queue_type, "x-dead-letter-exchange": topology.dead_letter_exchange}
    if queue_type == "quorum":
        arguments["x-delivery-limit"] = broker.settings.delivery_limit
    with _channel(broker) as channel:
        # Not kombu.Queue: with no bindings it binds the queue by the empty routing key.
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
        for pattern in patterns:
            channel.queue_bind(queue, topology.exchange, pattern)


def declare_plain_queue(broker: Broker, queue: str, queue_type: str, exchange: str, pattern: str) -> None:
    """Declare a durable queue of ``queue_type`` (no dead-lettering) bound to ``exchange`` by ``pattern``."""
    with _channel(broker) as channel:
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments={"x-queue-type": queue_type})
        channel.queue_bind(queue, exchange, pattern)


def declare_tail_queue(
    broker: Broker,
    channel: Any,
    exchange: str,
    patterns: Sequence[str],
    max_length: int,
    *,
    overflow_to: str | None = None,
) -> str:
    """Declare a server-named exclusive queue bounded to ``max_length`` messages.

    The oldest messages are dropped past the bound; with ``overflow_to`` they are
    dead-lettered to that queue instead, so the dropped ones can be counted.
    """
    arguments: dict[str, Any] = {"x-max-length": max_length, "x-overflow": "drop-head"}
    if overflow_to is not None:
        arguments.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": overflow_to})
    with translated(broker.url):
        name, _count, _consumers = channel.queue_declare("", exclusive=True, auto_delete=True, arguments=arguments)
        for pattern in patterns:
            channel.queue_bind(name, exchange, pattern)
    return str(name)


def declare_counter_queue(broker: Broker, channel: Any, max_length: int) -> str:
    """Declare a server-named exclusive queue that only collects messages to be counted."""
    arguments = {"x-max-length": max_length, "x-overflow": "drop-head"}
    with translated(broker.url):
        name, _count, _consumers = channel.queue_declare("", exclusive=True, auto_delete=True, arguments=arguments)
    return str(name)


def bind_queue(broker: Broker, queue: str, exchange: str, pattern: str) -> None:
    """Bind ``queue`` to ``exchange`` by ``pattern`` (idempotent)."""
    with _channel(broker) as channel:
        channel.queue_bind(queue, exchange, pattern)


def unbind_queue(broker: Broker, queue: str, exchange: str, pattern: str) -> None:
    """Remove the binding of ``queue`` to ``exchange`` by ``pattern`` (no error if there was none)."""
    with _channel(broker) as channel:
        channel.queue_unbind(queue, exchange, pattern)


def queue_exists(broker: Broker, queue: str) -> bool:
    """Whether ``queue`` exists."""
    with _channel(broker) as channel:
        try:
            channel.queue_declare(queue, passive=True)
        except amqp.exceptions.NotFound:
            return False
    return True


def exchange_exists(broker: Broker, exchange: str) -> bool:
    """Whether ``exchange`` exists ("" is the default exchange, which always does)."""
    if exchange == "":
        return True
    with _channel(broker) as channel:
        try:
            channel.exchange_declare(exchange, "topic", passive=True)
        except amqp.exceptions.NotFound:
            return False
    return True


def ensure_consumer_queue(
    broker: Broker, topology: Topology, queue: str, patterns: Sequence[str], *, queue_type: str = "quorum"
) -> bool:
    """Use an existing queue as it is (adding only the bindings asked for); declare a missing one.

    A missing queue is bound to ``patterns``, or to ``#`` when none are given. Returns
    whether it was declared now (and so dead-letters to logctl's DLX). With
    ``settings.declare`` off a missing queue is a NotFound that says who can create it.
    """
    if not queue_exists(broker, queue):
        if not broker.settings.declare:
            raise NotFound(
                f"queue {queue!r} does not exist in vhost {_vhost(broker)!r} and --no-declare forbids creating it: "
                "a user with configure permission can create it (logctl consume --queue ... without --no-declare)"
            )
        declare_consumer_queue(broker, topology, queue, patterns or ("#",), queue_type=queue_type)
        return True
    with _channel(broker) as channel:
        for pattern in patterns:
            channel.queue_bind(queue, topology.exchange, pattern)
    return False


def queue_depth(broker: Broker, queue: str) -> int:
    """Return how many messages wait in ``queue``; NotFound if it does not exist."""
    with _channel(broker) as channel:
        try:
            _name, count, _consumers = channel.queue_declare(queue, passive=True)
        except amqp.exceptions.NotFound as exc:
            raise NotFound(f"queue {queue!r} does not exist") from exc
    return int(count)


def default_queue_name(settings: Settings) -> str | None:
    """Return the default consumer queue: the setting, else ``<exchange>.default``; None if "none"."""
    if settings.default_queue.lower() == "none":
        return None
    return settings.default_queue or f"{settings.exchange}.default"


def topology_of(settings: Settings) -> Topology:
    """Return the topology the settings name."""
    return Topology(settings.exchange, default_queue_name(settings))


def delete_topology(broker: Broker, topology: Topology, queues: Sequence[str] = ()) -> None:
    """Delete a topology's exchanges and queues (benchmarks clean up after themselves)."""
    names = [topology.unrouted_queue, topology.dead_letter_queue, *queues]
    if topology.default_queue:
        names.append(topology.default_queue)
    with _channel(broker) as channel:
        for queue in names:
            channel.queue_delete(queue)
        for exchange in (topology.exchange, topology.unrouted_exchange, topology.dead_letter_exchange):
            channel.exchange_delete(exchange)
