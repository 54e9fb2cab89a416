"""The HTTP intake end to end: POST, 202 once confirmed, the record in the sink."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import signal
import sqlite3
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Env, run_logctl, self_signed, sink_messages, start_logctl

pytestmark = pytest.mark.integration
TOKEN = "s3cret-token-for-tests-0123456789"


@dataclass
class Answer:
    status: int
    body: dict[str, object]
    headers: dict[str, str]


def post(base: str, body: bytes, content_type: str = "application/x-ndjson", **headers: str) -> Answer:
    request = urllib.request.Request(f"{base}/api/log", data=body, method="POST")
    request.add_header("Content-Type", content_type)
    for key, value in headers.items():
        request.add_header(key.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Answer(response.status, json.loads(response.read()), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers))


def announce_only(base: str, length: int) -> int:
    """Send the headers of a POST of ``length`` bytes, no body: the answer's status."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/api/log")
    conn.putheader("Content-Type", "application/x-ndjson")
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    status = conn.getresponse().status
    conn.close()
    return status


def post_chunked(base: str, chunks: list[bytes]) -> int:
    """POST with chunked transfer encoding (no Content-Length); the answer's status, or 413 if cut off."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/api/log", body=iter(chunks), headers={"Content-Type": "application/x-ndjson"})
        return conn.getresponse().status
    except ConnectionError:
        return 413  # the server answered and closed while the body was still being sent
    finally:
        conn.close()


def ndjson(*records: dict[str, object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


class Listener:
    """A ``logctl ship --listen`` process on an ephemeral port."""

    def __init__(self, env: Env, *args: str) -> None:
        self.proc = start_logctl(["ship", "--listen", "127.0.0.1:0", *args], env, text=True)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        found = re.search(r"listening on (https?://127\.0\.0\.1:\d+)/api/log", line)
        assert found, line + self.proc.stderr.read()
        self.base = found.group(1)
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until /readyz says the intake can publish, as a load balancer would."""
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=5):
                    return
            except urllib.error.HTTPError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _out, err = self.proc.communicate(timeout=90)
        assert self.proc.returncode == 0, err
        return str(err)


@pytest.fixture
def listener(env: Env) -> Iterator[Listener]:
    running = Listener(env)
    yield running
    if running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


def consume_all(env: Env, tmp_path: Path) -> list[str]:
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    return sink_messages(db)


def test_a_202_means_the_records_are_in_the_broker(env: Env, tmp_path: Path, listener: Listener) -> None:
    one = post(listener.base, json.dumps({"message": "hello", "level": "error"}).encode(), "application/json")
    assert (one.status, one.body) == (202, {"accepted": 1})
    many = post(listener.base, ndjson({"msg": "a", "trace_id": "t-1"}, {"msg": "b", "service": "billing"}))
    assert (many.status, many.body) == (202, {"accepted": 2})
    array = post(listener.base, json.dumps([{"message": "c"}, {"message": "d"}]).encode(), "application/json")
    assert array.status == 202
    err = listener.stop()
    assert "http_requests=3 http_records=5" in err
    db = tmp_path / "out.db"
    assert run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env).returncode == 0
    with sqlite3.connect(db) as conn:
        rows = {
            m: (lvl, svc, tid)
            for m, lvl, svc, tid in conn.execute("select message, level, service, trace_id from records")
        }
    assert rows == {
        "hello": ("ERROR", "http", None),
        "a": ("INFO", "http", "t-1"),
        "b": ("INFO", "billing", None),
        "c": ("INFO", "http", None),
        "d": ("INFO", "http", None),
    }


def test_bad_bodies_get_their_status_and_take_nothing(env: Env, tmp_path: Path, listener: Listener) -> None:
    bad = post(listener.base, b'{"msg":"fine"}\n{not json\n[1]\n{"level":"warn"}\n')
    assert bad.status == 400
    assert [r["index"] for r in bad.body["records"]] == [1, 2, 3]  # type: ignore[index, union-attr]
    assert "no message" in json.dumps(bad.body)
    assert post(listener.base, b"x=1", "application/x-www-form-urlencoded").status == 415
    assert post(listener.base, b"{}", content_encoding="br").status == 415
    assert post(listener.base, b"not gzip at all", content_encoding="gzip").status == 400
    assert post(listener.base, b"").status == 400
    assert announce_only(listener.base, 11 << 20) == 413  # over the default 10 MiB: refused before it is sent
    chunked = post_chunked(listener.base, [b'{"msg":"' + b"x" * (1 << 20) + b'"}\n'] * 11)  # no length given
    assert chunked == 413
    bomb = gzip.compress(b'{"msg":"' + b"a" * (20 << 20) + b'"}\n')  # 20 KB that inflates to 20 MB
    assert post(listener.base, bomb, content_encoding="gzip").status == 413
    packed = post(listener.base, gzip.compress(ndjson({"msg": "zipped"})), content_encoding="gzip")
    assert packed.status == 202
    listener.stop()
    assert consume_all(env, tmp_path) == ["zipped"]


def test_concurrent_clients_and_an_idempotency_key_retry_store_each_record_once(
    env: Env, tmp_path: Path, listener: Listener
) -> None:
    def client(n: int) -> int:
        records = [{"msg": f"c{n}-{i}"} for i in range(16)]
        return post(listener.base, ndjson(*records), idempotency_key=f"req-{n}").status

    with ThreadPoolExecutor(16) as pool:
        assert set(pool.map(client, range(200))) == {202}
        assert set(pool.map(client, range(50))) == {202}  # retries, as after lost answers
    listener.stop()
    stored = consume_all(env, tmp_path)
    assert sorted(stored) == sorted(f"c{n}-{i}" for n in range(200) for i in range(16))


def test_tokens_are_checked_and_needed_beyond_loopback(env: Env, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# name:token\nbilling:{TOKEN}\n")
    refused = run_logctl(["ship", "--listen", "0.0.0.0:0"], env, timeout=30)
    assert refused.returncode == 3 and "without --token-file" in refused.stderr
    guarded = Listener(env, "--token-file", str(tokens))
    try:
        body = ndjson({"msg": "from billing"})
        assert post(guarded.base, body).status == 401
        assert post(guarded.base, body, authorization="Bearer wrong-token-wrong-token").status == 401
        assert post(guarded.base, body, authorization=f"Bearer {TOKEN}").status == 202
    finally:
        guarded.stop()
    db = tmp_path / "out.db"
    assert run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env).returncode == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("select service, message from records").fetchall() == [("billing", "from billing")]


def test_health_and_readiness(listener: Listener) -> None:
    for path, status in (("/healthz", "ok"), ("/readyz", "ready")):
        with urllib.request.urlopen(listener.base + path, timeout=10) as response:
            assert json.loads(response.read())["status"] == status


def test_listen_alongside_files(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "file.log"
    log.write_text('level=info msg="from the file"\n')
    both = Listener(env, "--linger-ms", "50", str(log))
    try:
        assert post(both.base, ndjson({"msg": "from http"})).status == 202
        time.sleep(1.5)  # the file is read and confirmed too
    finally:
        both.stop()
    assert sorted(consume_all(env, tmp_path)) == ["from http", "from the file"]


def test_a_port_in_use_is_one_line_and_exit_3(env: Env, listener: Listener) -> None:
    port = listener.base.rsplit(":", 1)[1]
    result = run_logctl(["ship", "--listen", f"127.0.0.1:{port}"], env, timeout=30)
    assert result.returncode == 3 and "cannot listen on 127.0.0.1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_https_with_a_certificate_and_its_ca(env: Env, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    other, _ = self_signed(tmp_path, "other")
    secure = start_logctl(
        ["ship", "--listen", "127.0.0.1:0", "--tls-cert-file", str(cert), "--tls-key-file", str(key)], env, text=True
    )
    try:
        assert secure.stderr is not None
        line = secure.stderr.readline()
        found = re.search(r"listening on (https://127\.0\.0\.1:\d+)/api/log", line)
        assert found, line
        base = found.group(1)
        trusting = ssl.create_default_context(cafile=str(cert))
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/readyz", timeout=5, context=trusting)
                break
            except urllib.error.HTTPError:
                assert time.time() < deadline
                time.sleep(0.1)
        request = urllib.request.Request(f"{base}/api/log", data=ndjson({"msg": "over tls"}), method="POST")
        request.add_header("Content-Type", "application/x-ndjson")
        with urllib.request.urlopen(request, timeout=30, context=trusting) as response:
            assert response.status == 202
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(base + "/healthz", timeout=5, context=ssl.create_default_context(cafile=str(other)))
    finally:
        secure.send_signal(signal.SIGTERM)
        secure.communicate(timeout=60)
    assert secure.returncode == 0
    assert consume_all(env, tmp_path) == ["over tls"]


def test_a_certificate_without_its_key_is_exit_3(env: Env, tmp_path: Path) -> None:
    cert, _key = self_signed(tmp_path, "server")
    result = run_logctl(["ship", "--listen", "127.0.0.1:0", "--tls-cert-file", str(cert)], env, timeout=30)
    assert result.returncode == 3 and "go together" in result.stderr


def test_edge_options_apply_to_the_intake_and_its_answer_counts_what_was_dropped(env: Env, tmp_path: Path) -> None:
    running = Listener(env, "--min-level", "info", "--drop", "^ping$", "--redact", "email", "--add-field", "via=http")
    try:
        answer = post(
            running.base,
            ndjson(
                {"message": "debug noise", "level": "debug"},
                {"message": "ping"},
                {"message": "signup of carol@example.com", "attrs": {"contact": "dave@example.com"}},
            ),
        )
        assert (answer.status, answer.body) == (202, {"accepted": 1, "dropped": 2})
        all_dropped = post(running.base, ndjson({"message": "ping"}))
        assert (all_dropped.status, all_dropped.body) == (202, {"accepted": 0, "dropped": 1})
        err = running.stop()
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
    assert "dropped=3 redacted=1" in err
    db = tmp_path / "out.db"
    assert run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env).returncode == 0
    with sqlite3.connect(db) as conn:
        rows = list(conn.execute("select message, attrs from records"))
    assert len(rows) == 1
    message, attrs = rows[0]
    assert message == "signup of [redacted:email]"
    assert json.loads(attrs)["contact"] == "[redacted:email]" and json.loads(attrs)["via"] == "http"


def test_listen_workers_serve_one_port_from_several_processes_and_count_every_request(env: Env, tmp_path: Path) -> None:
    """--listen-workers 3: connections spread over three processes (SO_REUSEPORT), each 202
    confirmed by its own process; the summary adds them up; a kill -9 of ship takes them all."""
    running = Listener(env, "--listen-workers", "3")
    from tests.fault.test_ship_faults import child_pids, wait_gone

    try:
        spawned = [p for p in child_pids(running.proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(spawned) == 2  # ship's own process is the third (the resource tracker aside)

        def one_client(start: int) -> list[int]:
            statuses = []
            for i in range(start, start + 100):
                # a new connection each time, so that the kernel spreads them over the processes
                statuses.append(post(running.base, ndjson({"message": f"line {i}"})).status)
            return statuses

        with ThreadPoolExecutor(8) as pool:
            statuses = [s for batch in pool.map(one_client, range(0, 800, 100)) for s in batch]
        assert statuses == [202] * 800
        err = running.stop()
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
    assert "http_requests=800 http_records=800" in err, err
    numbers = sorted(int(m.split()[1]) for m in consume_all(env, tmp_path))
    assert numbers == list(range(800))

    killed = Listener(env, "--listen-workers", "2")
    workers = child_pids(killed.proc.pid)
    assert workers  # the worker and the resource tracker: none outlives ship
    killed.proc.kill()
    killed.proc.wait()
    wait_gone(workers)
