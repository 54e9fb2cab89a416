"""logctl against things it did not create: other clients' messages, exchanges and queues
declared by someone else, and a user without configure permission."""

from __future__ import annotations

import importlib.util
import json
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import amqp
import pytest

from logctl.codec import MSGPACK_TYPE
from tests.conftest import (
    BROKER_URL,
    REPO,
    Env,
    amqp_connect,
    management,
    run_logctl,
    sink_messages,
    start_logctl,
    with_login,
)
from tests.numbered import assert_exactly_once, numbered, sequence_numbers

pytestmark = pytest.mark.integration


def publish(exchange: str, key: str, body: bytes, **properties: object) -> None:
    conn = amqp_connect()
    try:
        ch = conn.channel()
        ch.confirm_select()
        ch.basic_publish(amqp.Message(body, delivery_mode=2, **properties), exchange=exchange, routing_key=key)
    finally:
        conn.close()


def depth(queue: str) -> int:
    conn = amqp_connect()
    try:
        return int(conn.channel().queue_declare(queue, passive=True)[1])
    finally:
        conn.close()


def bind_queue(env: Env, suffix: str, pattern: str) -> str:
    """Have logctl declare a consumer queue (quorum, dead-lettering to its DLX) bound by ``pattern``."""
    queue = env.queue(suffix)
    result = run_logctl(
        ["consume", "--queue", queue, "--bind", pattern, "--exit-when-idle", "0.1s", "--sink", "stdout"], env
    )
    assert result.returncode == 0, result.stderr
    return queue


# --- 1. other publishers' messages ---------------------------------------------------------


def test_identical_bodies_from_a_plain_client_are_distinct_records(env: Env, tmp_path: Path) -> None:
    queue = bind_queue(env, "seed", "seed.#")
    body = b"User login attempt from IP: 10.0.0.1"
    for _ in range(5):
        publish(env.exchange, "seed.INFO", body, content_type="text/plain")
    for _ in range(3):  # Debian's amqp-tools, as a user would reproduce it (make test installs it)
        cmd = ["amqp-publish", "-u", BROKER_URL.rstrip("/"), "-e", env.exchange, "-r", "seed.INFO", "-p"]
        subprocess.run([*cmd, "-b", body.decode()], check=True, timeout=30)
    expected = 8
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    assert f"stored={expected} duplicates=0" in result.stderr
    assert sink_messages(db) == [body.decode()] * expected


def test_a_message_id_keeps_redeliveries_exactly_once(env: Env, tmp_path: Path) -> None:
    queue = bind_queue(env, "ids", "ids.#")
    for i in range(50):
        publish(env.exchange, "ids.INFO", f"event {i}".encode(), message_id=f"evt-{i}")
    publish(env.exchange, "ids.INFO", b"event 0", message_id="evt-0")  # the same event published twice
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    assert sorted(sink_messages(db)) == sorted(f"event {i}" for i in range(50))


def test_a_service_level_routing_key_names_what_the_body_does_not(env: Env, tmp_path: Path) -> None:
    queue = bind_queue(env, "keys", "api.#")
    publish(env.exchange, "api.error", b"disk full", content_type="text/plain")  # names neither
    publish(env.exchange, "api.error", b"WARN cache cold", content_type="text/plain")  # its own level wins
    publish(env.exchange, "api.warning", b'{"message": "slow", "service": "db"}', content_type="application/json")
    publish(env.exchange, "api.x", b"no level in the key", content_type="text/plain")
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        rows = dict(((m, (lvl, svc)) for m, lvl, svc in conn.execute("select message, level, service from records")))
    assert rows == {
        "disk full": ("ERROR", "api"),
        "cache cold": ("WARN", "api"),
        "slow": ("WARN", "db"),
        "no level in the key": ("INFO", "external"),
    }


def test_replay_dry_run_says_how_a_rejected_message_was_undecodable(env: Env, tmp_path: Path) -> None:
    queue = bind_queue(env, "junk", "junk.#")  # logctl's queue: consume rejects, the broker dead-letters
    publish(env.exchange, "junk.info", b"\xc1 not msgpack", content_type=MSGPACK_TYPE)
    result = run_logctl(
        ["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{tmp_path / 'x.db'}"], env
    )
    assert result.returncode == 0, result.stderr
    assert "dead_lettered=1" in result.stderr
    dry = run_logctl(["replay", "dlq", "--dry-run", "--output", "json"], env)
    assert dry.returncode == 0, dry.stderr
    (row,) = map(json.loads, dry.stdout.splitlines())
    assert row["reason"] == "rejected" and row["origin_queue"] == queue
    assert row["detail"].startswith(f"cannot decode {MSGPACK_TYPE} body")


def _kill_after_store_before_ack(env: Env, queue: str, db: Path) -> None:
    """Start consume, and kill -9 it once its row is committed: it acks only after its next wait."""
    proc = start_logctl(["consume", "--queue", queue, "--sink", f"sqlite:///{db}"], env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if sink_messages(db):
                    break
            except sqlite3.Error:
                pass
            time.sleep(0.005)
        else:
            pytest.fail("consume stored nothing within 60 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.parametrize(("message_id", "rows"), [("order-17", 1), (None, 2)])
def test_redelivery_after_kill_9_is_once_with_a_message_id_and_at_least_once_without(
    env: Env, tmp_path: Path, message_id: str | None, rows: int
) -> None:
    """The README's contract for foreign messages, shown on a real redelivery.

    The kill must land in the ~0.2 s between the commit and the ack; on a loaded machine
    the test's poll can miss it, so the setup is tried again (a new queue and sink), up to
    five times, before the redelivery is tested. The contract's assertions are not retried.
    """
    properties = {"message_id": message_id} if message_id else {}
    for attempt in range(5):
        queue = bind_queue(env, f"kill{attempt}", f"kill{attempt}.#")
        publish(env.exchange, f"kill{attempt}.ERROR", b"payment failed", content_type="text/plain", **properties)
        db = tmp_path / f"out{attempt}.db"
        _kill_after_store_before_ack(env, queue, db)
        if depth(queue) == 1:
            break
    assert depth(queue) == 1, "the kill came after the ack five times: no redelivery to test"
    result = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    assert sink_messages(db) == ["payment failed"] * rows
    assert depth(queue) == 0


def test_a_json_content_type_with_a_body_that_is_not_json_is_a_flagged_text_record(env: Env, tmp_path: Path) -> None:
    queue = bind_queue(env, "js", "js.#")
    publish(env.exchange, "js.INFO", b"{oops, not json", content_type="application/json")
    publish(
        env.exchange,
        "js.INFO",
        b'{"level":"error","msg":"real json","trace_id":"abc"}',
        content_type="application/json",
    )
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select level, message, trace_id, attrs from records").fetchall()
    assert sorted(rows) == [
        # Neither body names a time: each record's is when it was decoded, and says so.
        ("ERROR", "real json", "abc", '{"logctl.read_time":true}'),
        ("INFO", "{oops, not json", None, '{"logctl.invalid_json":true,"logctl.read_time":true}'),
    ]


# --- 3. brokers provisioned by someone else --------------------------------------------------


@pytest.fixture
def foreign_exchange(env: Env) -> str:
    """The main exchange declared as a plain `rabbitmqadmin declare exchange name=... type=topic` would."""
    conn = amqp_connect()
    conn.channel().exchange_declare(env.exchange, "topic", durable=True, auto_delete=False)
    conn.close()
    env["LOGCTL_DEFAULT_QUEUE"] = "none"  # else logctl's default queue (bound to #) would take every record
    return env.exchange


def test_an_exchange_declared_elsewhere_is_used_as_it_is_with_one_warning(
    env: Env, tmp_path: Path, foreign_exchange: str
) -> None:
    queue = bind_queue(env, "app", "app.#")
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 1000))
    result = run_logctl(["ship", "--no-follow", str(log)], env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("exists with other arguments") == 1
    assert "logctl policy apply unrouted-ae" in result.stderr
    db = tmp_path / "out.db"
    consumed = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert consumed.returncode == 0, consumed.stderr
    assert_exactly_once(sequence_numbers(sink_messages(db)), 1000)


def test_a_returned_batch_waits_unconfirmed_until_a_queue_is_bound_then_is_stored_once(
    env: Env, tmp_path: Path, foreign_exchange: str
) -> None:
    log = tmp_path / "orders.log"
    log.write_text(numbered(0, 5000))
    ship = start_logctl(["ship", "--no-follow", "--shutdown-timeout", "120s", str(log)], env, stdout=None, text=True)
    assert ship.stderr is not None
    try:
        notice = ship.stderr.readline()
        while "holding those records" not in notice:
            assert notice, "ship ended without saying that its records were returned"
            notice = ship.stderr.readline()
        assert "'orders.info'" in notice
        time.sleep(1.5)  # a checkpoint save or two
        status = run_logctl(["ship", "--status", "--output", "json"], env)
        assert [json.loads(line)["offset"] for line in status.stdout.splitlines()] in ([], [0])
        conn = amqp_connect()  # someone binds a queue at last
        queue = env.queue("late")
        conn.channel().queue_declare(queue, durable=True, auto_delete=False)
        conn.channel().queue_bind(queue, env.exchange, "orders.#")
        conn.close()
        _out, rest = ship.communicate(timeout=120)
    finally:
        ship.kill()
    assert ship.returncode == 0, rest
    assert "unconfirmed_batches=0" in rest and "routed again" in rest
    status = run_logctl(["ship", "--status", "--output", "json"], env)
    assert [json.loads(line)["offset"] for line in status.stdout.splitlines()] == [log.stat().st_size]
    db = tmp_path / "out.db"
    consumed = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert consumed.returncode == 0, consumed.stderr
    assert_exactly_once(sequence_numbers(sink_messages(db)), 5000)


@pytest.fixture
def app_user(env: Env) -> Iterator[str]:
    """A user with write and read but no configure permission, as production users often are."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    management("PUT", f"/api/users/{name}", {"password": "app-pw", "tags": ""})
    management("PUT", f"/api/permissions/%2F/{name}", {"configure": "^$", "write": ".*", "read": ".*"})
    yield with_login(BROKER_URL, name, "app-pw")
    management("DELETE", f"/api/users/{name}")


def test_a_user_without_configure_permission_ships_and_consumes_what_exists(
    env: Env, tmp_path: Path, app_user: str
) -> None:
    queue = bind_queue(env, "prod", "prod.#")  # provisioned by an administrator (guest)
    as_app = Env({**env, "LOGCTL_URL": app_user})
    log = tmp_path / "prod.log"
    log.write_text(numbered(0, 300))
    shipped = run_logctl(["ship", "--no-follow", "--no-declare", str(log)], as_app)
    assert shipped.returncode == 0, shipped.stderr
    log.write_text(numbered(0, 300) + numbered(300, 600))
    fallback = run_logctl(["ship", "--no-follow", str(log)], as_app)  # without --no-declare: it says, then goes on
    assert fallback.returncode == 0, fallback.stderr
    assert "may not declare" in fallback.stderr and "--no-declare" in fallback.stderr
    db = tmp_path / "out.db"
    consumed = run_logctl(
        ["consume", "--no-declare", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], as_app
    )
    assert consumed.returncode == 0, consumed.stderr
    assert_exactly_once(sequence_numbers(sink_messages(db)), 600)


def test_without_configure_permission_what_cannot_be_done_is_one_clear_line(env: Env, app_user: str) -> None:
    as_app = Env({**env, "LOGCTL_URL": app_user})
    missing = run_logctl(["consume", "--no-declare", "--exit-when-idle", "0.1s"], as_app)
    assert missing.returncode == 5
    assert f"exchange {env.exchange!r} does not exist" in missing.stderr and "configure permission" in missing.stderr
    created = run_logctl(["consume", "--exit-when-idle", "0.1s"], as_app)  # may not create the topology either
    assert created.returncode == 9
    assert "configure permission needed" in created.stderr
    bind_queue(env, "any", "#")
    tail = run_logctl(["tail", "--count", "1"], as_app, timeout=60)
    assert tail.returncode == 9
    assert "tail reads through a temporary queue" in tail.stderr and "configure permission" in tail.stderr
    no_queue = run_logctl(["consume", "--no-declare", "--queue", "nope", "--exit-when-idle", "0.1s"], as_app)
    assert no_queue.returncode == 5 and "queue 'nope' does not exist" in no_queue.stderr
    for result in (missing, created, tail, no_queue):
        assert len(result.stderr.strip().splitlines()) <= 2 and "Traceback" not in result.stderr


# --- 4. a queue that cannot dead-letter --------------------------------------------------------


def test_consume_sets_aside_what_it_cannot_decode_when_the_queue_has_no_dead_letter_exchange(
    env: Env, tmp_path: Path
) -> None:
    bind_queue(env, "any", "none.#")  # logctl's topology, with its dead-letter queue
    plain = env.queue("plain")
    conn = amqp_connect()
    conn.channel().queue_declare(plain, durable=True, auto_delete=False)  # someone else's: no dead-lettering
    conn.channel().queue_bind(plain, env.exchange, "corrupt.#")
    conn.close()
    publish(env.exchange, "corrupt.info", b"\xc1 not msgpack", content_type=MSGPACK_TYPE, message_id="m-1")
    publish(env.exchange, "corrupt.info", b"a good line", content_type="text/plain")
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--queue", plain, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    assert f"queue {plain!r} cannot dead-letter: it has no dead-letter exchange" in result.stderr
    assert "stored=1" in result.stderr and "dead_lettered=1" in result.stderr
    assert depth(plain) == 0
    dlq = f"{env.exchange}.dlq"
    conn = amqp_connect()
    message = conn.channel().basic_get(dlq, no_ack=False)
    assert message is not None and message.body == b"\xc1 not msgpack"
    headers = message.properties["application_headers"]
    assert headers["x-logctl-death-queue"] == plain and "cannot decode" in headers["x-logctl-death-error"]
    assert message.properties["message_id"] == "m-1" and message.properties["content_type"] == MSGPACK_TYPE
    conn.close()
    replayed = run_logctl(["replay", "dlq"], env)  # and replay knows where it came from
    assert replayed.returncode == 0, replayed.stderr
    assert "moved 1, left 0" in replayed.stderr
    assert depth(plain) == 1 and depth(dlq) == 0


def test_logctls_own_queues_declared_elsewhere_with_other_arguments_are_used_as_they_are(
    env: Env, tmp_path: Path
) -> None:
    conn = amqp_connect()  # a classic DLQ, where logctl would declare a quorum one
    conn.channel().queue_declare(f"{env.exchange}.dlq", durable=True, auto_delete=False)
    conn.close()
    queue = bind_queue(env, "own", "own.#")
    publish(env.exchange, "own.info", b"still consumed", content_type="text/plain")
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    assert f"queue '{env.exchange}.dlq' exists with other arguments" in result.stderr
    assert sink_messages(db) == ["still consumed"]
    publish(f"{env.exchange}.dlx", "", b"dead-lettered")  # and the DLQ still takes what its exchange gets
    assert depth(f"{env.exchange}.dlq") == 1


# --- the original design's LogEntry (Protobuf) -------------------------------------------------


def _logentry_module(tmp_path: Path) -> Any:
    """logentry_pb2, generated by protoc from logctl/proto/logentry.proto, as a publisher would build it."""
    from grpc_tools import protoc

    proto_dir = REPO / "logctl" / "proto"
    assert protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={tmp_path}", str(proto_dir / "logentry.proto")]) == 0
    spec = importlib.util.spec_from_file_location("logentry_pb2", tmp_path / "logentry_pb2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_logentry_protobuf_messages_are_consumed_field_by_field(env: Env, tmp_path: Path) -> None:
    pb = _logentry_module(tmp_path)
    queue = bind_queue(env, "pb", "pb.#")
    entries = [
        pb.LogEntry(
            timestamp=1_795_000_000_123, level="ERROR", service="billing", message="charge failed", trace_id="t-1"
        ),
        pb.LogEntry(timestamp=1_795_000_001_000, level="warning", service="api", message="slow"),
        pb.LogEntry(message="bare"),  # every other field at its default
    ]
    for i, entry in enumerate(entries):
        publish(
            env.exchange,
            "pb.info",
            entry.SerializeToString(),
            content_type="application/x-protobuf",
            message_id=f"pb-{i}",
        )
    publish(env.exchange, "pb.info", b"\xff\xff\xff not protobuf", content_type="application/x-protobuf")
    db = tmp_path / "out.db"
    result = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    assert "stored=3" in result.stderr and "dead_lettered=1" in result.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select timestamp, level, service, message, trace_id from records").fetchall()
    by_message = {r[3]: r for r in rows}
    assert by_message["charge failed"][1:] == ("ERROR", "billing", "charge failed", "t-1")
    assert by_message["charge failed"][0].startswith("2026-11-18T")  # 1,795,000,000,123 ms
    assert by_message["slow"][1:] == ("WARN", "api", "slow", None)
    assert by_message["bare"][1:] == ("INFO", "pb", "bare", None)  # what its routing key pb.info says
