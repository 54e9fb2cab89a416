"""The RabbitMQ management HTTP API, for what AMQP cannot do (policies, versions, queue views).

Standard library only (urllib): a handful of JSON calls do not need an HTTP dependency.
"""

from __future__ import annotations

import base64
import html
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from logctl.config import Settings, mask_url
from logctl.errors import AuthError, BadInput, BrokerUnreachable, ConfigError, NotFound

if TYPE_CHECKING:
    from logctl.transport import Broker

ENABLE_HINT = "is the management plugin enabled? (rabbitmq-plugins enable rabbitmq_management)"


def management_url(settings: Settings) -> str:
    """Return the management API base URL: the setting, else the AMQP host's port 15672 (https and 15671
    for amqps://) with the AMQP login."""
    if settings.management_url:
        return settings.management_url.rstrip("/")
    amqp = urlsplit(settings.primary_url)
    user = amqp.username or "guest"
    password = amqp.password or "guest"
    scheme, port = ("https", 15671) if amqp.scheme == "amqps" else ("http", 15672)
    return f"{scheme}://{quote(user)}:{quote(password)}@{amqp.hostname or 'localhost'}:{port}"


def management_client(settings: Settings, timeout: float = 10.0) -> Management:
    """The management API of the settings' broker, over https with the same TLS settings as AMQP."""
    context = None
    if urlsplit(management_url(settings)).scheme == "https":
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        if settings.cert_file:
            context.load_cert_chain(settings.cert_file, settings.key_file or None)
        if settings.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    return Management(management_url(settings), timeout=timeout, context=context)


def broker_management(settings: Settings, broker: Broker | None = None, timeout: float = 10.0) -> Management:
    """The management API of the broker the AMQP URL reaches, checked to be that broker's.

    A management URL derived from the AMQP host (port 15672) can name another broker on
    the same host (one on 5801 beside the system's on 5672): the API's cluster name must
    be the one the AMQP connection reports and, for a derived URL, one of its AMQP
    listeners must be on the AMQP URL's port. When they differ, or cannot be checked,
    this refuses (ConfigError) and says which URL to set. ``broker``, if given, is an
    AMQP connection to reuse (otherwise one is opened for the check and closed).
    """
    api = management_client(settings, timeout)
    check_same_broker(api, settings, broker)
    return api


_SET_IT = "set --management-url (or LOGCTL_MANAGEMENT_URL) to the management API of the broker at"


def check_same_broker(api: Management, settings: Settings, broker: Broker | None = None) -> None:
    """Refuse (ConfigError) unless ``api`` belongs to the broker that ``settings``' AMQP URL reaches."""
    amqp_url = urlsplit(settings.primary_url)
    amqp_port = amqp_url.port or (5671 if amqp_url.scheme == "amqps" else 5672)
    where = f"{amqp_url.hostname or 'localhost'}:{amqp_port}"
    overview = api.overview()  # an API that cannot be reached or refuses the login says so itself
    amqp_cluster = _amqp_cluster_name(settings, broker)  # as does a broker that cannot be reached
    api_cluster = str(overview.get("cluster_name", ""))
    if not api_cluster or not amqp_cluster:
        why = f"cannot check that {api.base} is the management API of {where} (no cluster name)"
        raise ConfigError(f"{why}; {_SET_IT} {where}")
    ports = sorted(
        {int(lst["port"]) for lst in overview.get("listeners", []) if str(lst.get("protocol", "")).startswith("amqp")}
    )
    derived = not settings.management_url
    if api_cluster != amqp_cluster or (derived and amqp_port not in ports):
        on = ", ".join(map(str, ports)) or "none"
        raise ConfigError(
            f"the management API at {api.base} belongs to another broker (cluster {api_cluster!r}, AMQP on port "
            f"{on}) than the one at {where} (cluster {amqp_cluster!r}): {_SET_IT} {where}"
        )


def _amqp_cluster_name(settings: Settings, broker: Broker | None) -> str:
    from logctl.transport import Broker  # the transport loads kombu: only for commands that need it

    if broker is not None and broker.connected:
        return cluster_name_of(broker)
    with Broker(settings) as own:
        return cluster_name_of(own)


def cluster_name_of(broker: Broker) -> str:
    """The cluster name the broker reported when the AMQP connection opened."""
    properties = broker.connection.connection.server_properties or {}
    name = properties.get("cluster_name", "")
    return name.decode() if isinstance(name, bytes) else str(name)


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy as the broker holds it."""

    vhost: str
    name: str
    pattern: str
    apply_to: str
    priority: int
    definition: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "apply-to": self.apply_to,
            "priority": self.priority,
            "definition": self.definition,
        }


class Management:
    """A small client of the management API."""

    def __init__(self, base_url: str, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"management URL must be http(s)://, not {mask_url(base_url)!r}")
        self._auth = base64.b64encode(f"{parts.username or 'guest'}:{parts.password or 'guest'}".encode()).decode()
        host = parts.hostname or "localhost"
        netloc = f"{host}:{parts.port}" if parts.port else host
        self.base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.timeout = timeout

    def _call(self, method: str, path: str, body: object | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Basic {self._auth}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc, path) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BrokerUnreachable(f"cannot reach the management API at {self.base}: {reason}; {ENABLE_HINT}") from exc
        return json.loads(raw) if raw else None

    def _http_error(self, exc: urllib.error.HTTPError, path: str) -> Exception:
        try:
            # The broker's reasons are HTML-escaped (&lt;&lt;"abc"&gt;&gt;): shown as it meant them.
            detail = html.unescape(" ".join(str(json.loads(exc.read()).get("reason", "")).split()))
        except (ValueError, AttributeError):
            detail = ""
        if exc.code == 401:
            return AuthError(f"the management API at {self.base} refused the login (401): check the user and password")
        if exc.code == 404:
            return NotFound(f"not found at the management API: {path} {detail}".strip())
        if exc.code == 400:
            return BadInput(f"the broker rejected the request: {detail or exc.reason}")
        return BrokerUnreachable(f"the management API answered {exc.code} for {path}: {detail or exc.reason}")

    def overview(self) -> dict[str, Any]:
        """The broker's overview: version, cluster name, node, listeners."""
        return dict(self._call("GET", "/api/overview"))

    def version(self) -> str:
        """Return the broker's version, e.g. ``3.10.8``."""
        return str(self.overview()["rabbitmq_version"])

    def vhost_exists(self, vhost: str) -> bool:
        try:
            self._call("GET", f"/api/vhosts/{quote(vhost, safe='')}")
        except NotFound:
            return False
        return True

    def policies(self, vhost: str | None = None) -> list[Policy]:
        path = "/api/policies" + (f"/{quote(vhost, safe='')}" if vhost is not None else "")
        return [
            Policy(p["vhost"], p["name"], p["pattern"], p["apply-to"], int(p["priority"]), p["definition"])
            for p in self._call("GET", path)
        ]

    def policy(self, vhost: str, name: str) -> Policy | None:
        try:
            p = self._call("GET", f"/api/policies/{quote(vhost, safe='')}/{quote(name, safe='')}")
        except NotFound:
            return None
        return Policy(p["vhost"], p["name"], p["pattern"], p["apply-to"], int(p["priority"]), p["definition"])

    def put_policy(self, policy: Policy) -> None:
        self._call("PUT", f"/api/policies/{quote(policy.vhost, safe='')}/{quote(policy.name, safe='')}", policy.body())

    def delete_policy(self, vhost: str, name: str) -> None:
        self._call("DELETE", f"/api/policies/{quote(vhost, safe='')}/{quote(name, safe='')}")

    def queue_dead_letter_exchange(self, vhost: str, queue: str) -> str | None:
        """Return the exchange ``queue`` dead-letters to (its argument, else its policy's), or None."""
        info = self._call("GET", f"/api/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")
        argument = (info.get("arguments") or {}).get("x-dead-letter-exchange")
        policy = (info.get("effective_policy_definition") or {}).get("dead-letter-exchange")
        found = argument if argument is not None else policy
        return None if found is None else str(found)

    def exchange_has_bindings(self, vhost: str, exchange: str) -> bool:
        """Whether anything is bound to ``exchange`` (so that what it receives can go somewhere)."""
        path = f"/api/exchanges/{quote(vhost, safe='')}/{quote(exchange, safe='')}/bindings/source"
        return bool(self._call("GET", path))

    def exchange_bindings(self, vhost: str, exchange: str) -> list[dict[str, Any]]:
        """The bindings whose source is ``exchange`` (destination, routing_key, destination_type)."""
        path = f"/api/exchanges/{quote(vhost, safe='')}/{quote(exchange, safe='')}/bindings/source"
        return list(self._call("GET", path))

    def queues(self, vhost: str) -> list[dict[str, Any]]:
        """The queues of ``vhost`` with their depth, consumers and type."""
        columns = (
            "name,type,messages,messages_ready,messages_unacknowledged,consumers,"
            "message_stats.publish_details.rate,message_stats.deliver_get_details.rate"
        )
        return list(self._call("GET", f"/api/queues/{quote(vhost, safe='')}?columns={columns}"))

    def queue_policies(self, vhost: str) -> dict[str, str | None]:
        """Return each queue's effective policy name (None if none), as the stats database has it."""
        queues = self._call("GET", f"/api/queues/{quote(vhost, safe='')}?columns=name,policy")
        return {q["name"]: q.get("policy") or None for q in queues}
