"""The management API over https with the TLS settings of AMQP: a local https server stands in
for the broker's management listener (the test broker has none over TLS)."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from logctl.config import Settings
from logctl.errors import BrokerUnreachable
from logctl.management import management_client, management_url
from tests.conftest import self_signed


class _Overview(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"rabbitmq_version": "3.10.8"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def https_api(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    cert, key = self_signed(tmp_path, "server")
    other, _ = self_signed(tmp_path, "other")
    server = http.server.HTTPServer(("127.0.0.1", 0), _Overview)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://guest:guest@127.0.0.1:{server.server_port}", cert, other
    server.shutdown()


def test_the_management_api_over_https_trusts_the_ca_file(https_api: tuple[str, Path, Path]) -> None:
    url, cert, other = https_api
    trusted = Settings(management_url=url, ca_file=str(cert))
    assert management_client(trusted).version() == "3.10.8"
    with pytest.raises(BrokerUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        management_client(Settings(management_url=url, ca_file=str(other))).version()
    insecure = Settings(management_url=url, insecure=True)
    assert management_client(insecure).version() == "3.10.8"


def test_an_amqps_url_means_https_management_on_15671() -> None:
    assert management_url(Settings(url="amqps://u:p@rabbit:5671/")) == "https://u:p@rabbit:15671"
    assert management_url(Settings(url="amqp://u:p@rabbit:5672/")) == "http://u:p@rabbit:15672"
