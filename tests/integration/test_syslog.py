"""``ship --syslog`` with real clients: util-linux logger (UDP, TCP with and without octet
counting, RFC 5424 and 3164) and rsyslog forwarding (omfwd), counted end to end; a TLS
client; garbage, oversize and unfinished frames closing only their own connection."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from logctl.config import resolve
from logctl.syslog_listener import SyslogOptions, SyslogServer, parse_endpoint, structured_data
from tests.conftest import Env, run_logctl, self_signed, start_logctl
from tests.numbered import assert_exactly_once, sequence_numbers

pytestmark = pytest.mark.integration
RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"  # scripts/ensure-test-tools installs it


class SyslogShip:
    """``logctl ship --syslog ...`` on ephemeral ports: ``ports[transport]``."""

    def __init__(self, env: Env, *urls: str, extra: tuple[str, ...] = ()) -> None:
        args = ["ship"] + [a for url in urls for a in ("--syslog", url)] + list(extra)
        self.proc = start_logctl(args, env, text=True)
        assert self.proc.stderr is not None
        self.ports: dict[str, int] = {}
        for _ in urls:
            line = self.proc.stderr.readline()
            found = re.search(r"listening for syslog on (\w+)://127\.0\.0\.1:(\d+)", line)
            assert found, line + self.proc.stderr.read()
            self.ports[found.group(1)] = int(found.group(2))

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _out, err = self.proc.communicate(timeout=90)
        assert self.proc.returncode == 0, err
        return str(err)


def stored(env: Env, tmp_path: Path) -> list[tuple[str, str, str, str]]:
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        return list(conn.execute("select message, level, service, attrs from records"))


def lines_file(tmp_path: Path, name: str, start: int, count: int) -> Path:
    path = tmp_path / name
    path.write_text("".join(f"line {i} from {name}\n" for i in range(start, start + count)))
    return path


def logger(*args: str) -> None:
    result = subprocess.run(["logger", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_logger_over_udp_and_tcp_with_either_framing_each_message_once(env: Env, tmp_path: Path) -> None:
    ship = SyslogShip(env, "udp://127.0.0.1:0", "tcp://127.0.0.1:0")
    try:
        udp, tcp = str(ship.ports["udp"]), str(ship.ports["tcp"])
        logger("--udp", "-n", "127.0.0.1", "-P", udp, "-t", "udpapp", "-f", str(lines_file(tmp_path, "u", 0, 300)))
        octets = lines_file(tmp_path, "o", 300, 300)
        logger("--tcp", "--octet-count", "--rfc5424", "-n", "127.0.0.1", "-P", tcp, "-t", "api", "-p", "local0.err",
               "--sd-id", "req@32473", "--sd-param", 'id="42"', "-f", str(octets))  # fmt: skip
        logger("--tcp", "-n", "127.0.0.1", "-P", tcp, "-t", "nl", "-f", str(lines_file(tmp_path, "n", 600, 300)))
        logger("--tcp", "--rfc3164", "-n", "127.0.0.1", "-P", tcp, "-t", "old", "-p", "user.warning",
               "-f", str(lines_file(tmp_path, "b", 900, 300)))  # fmt: skip
        time.sleep(1)
    finally:
        err = ship.stop()
    assert "syslog_messages=1200 syslog_udp_lost=0" in err, err
    rows = stored(env, tmp_path)
    assert_exactly_once(sequence_numbers(m for m, *_ in rows), 1200)
    by_service = {(svc, lvl) for _m, lvl, svc, _a in rows}
    assert by_service == {("udpapp", "INFO"), ("api", "ERROR"), ("nl", "INFO"), ("old", "WARN")}
    api = next(a for _m, _l, svc, a in rows if svc == "api")
    assert '"req@32473":{"id":"42"}' in api and '"log.source.address":"127.0.0.1:' in api


RSYSLOG_CONF = """
global(workDirectory="{work}")
module(load="imtcp")
input(type="imtcp" port="{listen}" address="127.0.0.1")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="octet-counted"
       template="RSYSLOG_SyslogProtocol23Format" queue.type="LinkedList" action.resumeRetryCount="-1")
action(type="omfwd" target="127.0.0.1" port="{udp}" protocol="udp")
"""


def test_rsyslog_forwarding_over_tcp_and_udp_arrives_once(env: Env, tmp_path: Path) -> None:
    ship = SyslogShip(env, "udp://127.0.0.1:0", "tcp://127.0.0.1:0")
    work = tmp_path / "rsyslog"
    work.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        listen = probe.getsockname()[1]
    conf = work / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(work=work, listen=listen, tcp=ship.ports["tcp"], udp=ship.ports["udp"]))
    rsyslog = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(work / "pid")], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", listen)) == 0:
                    break
            time.sleep(0.1)
        logger("--tcp", "-n", "127.0.0.1", "-P", str(listen), "-t", "relayed", "-p", "daemon.err",
               "-f", str(lines_file(tmp_path, "r", 0, 400)))  # fmt: skip
        time.sleep(3)  # rsyslog forwards as it can; the count below says whether all came
    finally:
        rsyslog.send_signal(signal.SIGTERM)
        rsyslog.wait(30)
        err = ship.stop()
    rows = stored(env, tmp_path)
    numbers = sequence_numbers(m for m, *_ in rows)
    # Each message came twice: once over TCP (RFC 5424, octet-counted), once over UDP (3164).
    assert_exactly_once(sorted(set(numbers)), 400)
    assert len(numbers) == 800, (len(numbers), err)
    assert {(svc, lvl) for _m, lvl, svc, _a in rows} == {("relayed", "ERROR")}


def test_a_tls_client_with_octet_counting(env: Env, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "syslog")
    ship = SyslogShip(env, "tls://127.0.0.1:0", extra=("--tls-cert-file", str(cert), "--tls-key-file", str(key)))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        raw = socket.create_connection(("127.0.0.1", ship.ports["tls"]))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            for i in range(50):
                msg = f"<11>1 2026-12-03T10:00:00Z host app - - - line {i} over tls".encode()
                tls.sendall(b"%d %s" % (len(msg), msg))
            # A clean close (close_notify), as TLS syslog clients do: closing with the
            # server's session tickets unread would reset the connection, and the kernel
            # would throw away what the server had not read yet.
            tls.unwrap().close()
        time.sleep(1)
    finally:
        err = ship.stop()
    assert "syslog_messages=50" in err, err
    rows = stored(env, tmp_path)
    assert_exactly_once(sequence_numbers(m for m, *_ in rows), 50)
    assert {(svc, lvl) for _m, lvl, svc, _a in rows} == {("app", "ERROR")}


def test_sigterm_while_a_tcp_client_sends_stores_every_message_it_read_once(env: Env, tmp_path: Path) -> None:
    """The clean-stop promise: what ship read from a connection is confirmed before it exits."""
    ship = SyslogShip(env, "tcp://127.0.0.1:0")
    sent = [0]

    def client() -> None:
        with socket.create_connection(("127.0.0.1", ship.ports["tcp"])) as sock:
            try:
                for i in range(200_000):
                    sock.sendall(b"<14>1 - - load - - - line %d\n" % i)
                    sent[0] = i + 1
            except OSError:
                pass  # ship stopped and closed the connection

    sender = threading.Thread(target=client, daemon=True)
    sender.start()
    while sent[0] < 20_000:
        time.sleep(0.05)
    err = ship.stop()
    sender.join(30)
    taken = int(re.search(r"syslog_messages=(\d+)", err).group(1))  # type: ignore[union-attr]
    assert 0 < taken <= sent[0]
    rows = stored(env, tmp_path)
    assert_exactly_once(sequence_numbers(m for m, *_ in rows), taken)  # the first ``taken``, each once


def _closed_by_server(sock: socket.socket, timeout: float = 10) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_garbage_oversize_and_unfinished_frames_close_only_their_connection(env: Env, tmp_path: Path) -> None:
    """In-process, against the real broker, with a short frame timeout: each bad client is
    closed with one line naming why, and a good client on the same port loses nothing."""
    settings = resolve({}, dict(env), None)
    notices: list[str] = []
    options = SyslogOptions((parse_endpoint("tcp://127.0.0.1:0"),), max_message_bytes=1024, frame_timeout_s=1.0)
    server = SyslogServer(settings, options, lambda: False, notices.append).start()
    port = server.bound[0].port
    good = socket.create_connection(("127.0.0.1", port))
    try:
        good.sendall(b"<14>1 - - good - - - line 0\n")
        bad_count = socket.create_connection(("127.0.0.1", port))
        bad_count.sendall(b"12x <13>not a count")
        oversize = socket.create_connection(("127.0.0.1", port))
        oversize.sendall(b"999999 <13>too big")
        long_line = socket.create_connection(("127.0.0.1", port))
        long_line.sendall(b"<13>" + b"x" * 2000)
        unfinished = socket.create_connection(("127.0.0.1", port))
        unfinished.sendall(b"400 <13>1 - - half - - - a frame that never ends")
        for sock in (bad_count, oversize, long_line, unfinished):
            assert _closed_by_server(sock), "the server kept a bad connection open"
            sock.close()
        good.sendall(b"<14>1 - - good - - - line 1\n")
        time.sleep(0.5)
    finally:
        good.close()
        assert server.close(30)
    assert server.stats.closed_connections == 4
    text = "\n".join(notices)
    for reason in ("not an octet count", "over the limit of 1024", "over 1024 bytes with no newline", "unfinished"):
        assert reason in text, text
    rows = stored(env, tmp_path)
    assert sorted(m for m, *_ in rows) == ["line 0", "line 1"]


def test_structured_data_into_attrs() -> None:
    assert structured_data('[a@1 k="v" q="say \\"hi\\""][b x="]"]') == {
        "a@1": {"k": "v", "q": 'say "hi"'},
        "b": {"x": "]"},
    }
    assert structured_data("[nope") is None


def test_connections_over_the_limit_are_refused_with_a_line_and_the_others_go_on(env: Env, tmp_path: Path) -> None:
    settings = resolve({}, dict(env), None)
    notices: list[str] = []
    options = SyslogOptions((parse_endpoint("tcp://127.0.0.1:0"),), max_connections=2)
    server = SyslogServer(settings, options, lambda: False, notices.append).start()
    port = server.bound[0].port
    first, second = (socket.create_connection(("127.0.0.1", port)) for _ in range(2))
    try:
        first.sendall(b"<14>1 - - c - - - line 0\n")
        second.sendall(b"<14>1 - - c - - - line 1\n")
        time.sleep(0.3)  # both are being served before the third comes
        third = socket.create_connection(("127.0.0.1", port))
        assert _closed_by_server(third)
        third.close()
        first.sendall(b"<14>1 - - c - - - line 2\n")
        time.sleep(0.3)
    finally:
        first.close()
        second.close()
        assert server.close(30)
    assert server.stats.refused_connections == 1
    assert any("2 connections are open already" in n for n in notices), notices
    assert sorted(m for m, *_ in stored(env, tmp_path)) == ["line 0", "line 1", "line 2"]
