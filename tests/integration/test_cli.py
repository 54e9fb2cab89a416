"""Each command's CLI: help, happy path, failure path (exit code + one stderr line), JSON output."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import amqp
import msgpack
import pytest
from typer.testing import CliRunner

from logctl.cli import app
from logctl.codec import JSON_TYPE, MSGPACK_TYPE
from tests.conftest import BROKER_URL, Env, amqp_connect, run_logctl, start_logctl, with_login

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["ship"], ["consume"], ["tail"], ["status"], ["config", "show"]])
def test_help_opens_with_a_sentence_and_shows_examples(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"NO_COLOR": "1", "COLUMNS": "200"})
    assert result.exit_code == 0
    if command:
        assert "Example" in result.stdout


def test_dry_run_prints_records_as_json_lines(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text('{"level":"warn","msg":"disk","trace_id":"t1"}\n2026-11-27 11:32:10,123 ERROR boom\n')
    result = runner.invoke(app, ["ship", "--no-follow", "--dry-run", "--output", "json", str(log)], env=env)
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["level"], r["service"], r["message"], r["trace_id"]) for r in records] == [
        ("WARN", "app", "disk", "t1"),
        ("ERROR", "app", "boom", None),
    ]
    assert records[1]["timestamp"] == "2026-11-27T11:32:10.123Z"
    assert "lines=2" in result.stderr


@pytest.mark.parametrize(
    ("args", "env_over", "code", "fragment"),
    [
        (["ship", "--no-follow", "/no/such/file.log"], {}, 5, "no such file"),
        (["consume", "--sink", "mongodb://x"], {}, 3, "unknown sink"),
        (
            ["ship", "--no-follow", "README.md"],
            {"LOGCTL_URL": with_login(BROKER_URL, "guest", "wrong")},
            8,
            "refused the login",
        ),
        (
            ["ship", "--no-follow", "README.md"],
            {"LOGCTL_URL": "amqp://guest:guest@127.0.0.1:1//", "LOGCTL_CONNECT_RETRIES": "0"},
            4,
            "cannot reach broker",
        ),
        (
            ["ship", "--no-follow", "README.md"],
            {"LOGCTL_URL": "amqp://guest:guest@127.0.0.1:1//;amqp://127.0.0.1:2", "LOGCTL_CONNECT_RETRIES": "0"},
            4,
            "none of the 2 brokers answered",
        ),
        (["ship", "--no-follow", "README.md"], {"LOGCTL_URL": "http://nope"}, 3, "amqp://"),
        (["ship", "--no-follow", "README.md"], {"LOGCTL_URL": f"{BROKER_URL};http://nope"}, 3, "amqp://"),
        (["tail", "--level", "LOUD"], {}, 3, "--level"),
        (["ship"], {}, 3, "give files"),
        (["ship", "--no-follow", "README.md", "--source-id", "x"], {}, 3, "give - as a path"),
    ],
)
def test_errors_are_one_line_with_a_distinct_exit_code(
    env: Env, args: list[str], env_over: dict[str, str], code: int, fragment: str
) -> None:
    result = run_logctl(args, {**env, **env_over}, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == code, result.stderr
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert "wrong" not in result.stderr  # never the password


def test_a_failover_url_connects_to_the_first_broker_that_answers(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\n")
    env["LOGCTL_URL"] = f"amqp://guest:guest@127.0.0.1:1//;{BROKER_URL}"  # nothing listens on port 1
    shipped = run_logctl(["ship", "--no-follow", str(log)], env)
    assert shipped.returncode == 0, shipped.stderr
    assert "records=2" in shipped.stderr
    consumed = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"sqlite:///{tmp_path / 'o.db'}"], env)
    assert "stored=2" in consumed.stderr, consumed.stderr


def test_unreadable_file_exits_9(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "secret.log"
    log.write_text("x\n")
    log.chmod(0)
    # Root reads every file; without CAP_DAC_* it is refused like anyone else.
    drop = [
        "setpriv",
        "--bounding-set",
        "-dac_override,-dac_read_search",
        "--inh-caps",
        "-dac_override,-dac_read_search",
    ]
    cmd = [*drop, sys.executable, "-m", "logctl", "ship", "--no-follow", str(log)]
    result = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 9, result.stderr
    assert "permission denied" in result.stderr


def test_debug_shows_the_traceback(env: Env) -> None:
    result = run_logctl(["--debug", "ship", "--no-follow", "/no/such/file"], env)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_config_show_says_where_each_value_came_from(env: Env, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('batch_size = 77\nurl = "amqp://u:hunter2@example:5672//"\n')
    result = runner.invoke(app, ["config", "show", "--output", "json", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.stderr
    rows = {r["key"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["batch_size"]["value"] == "77" and "config file" in rows["batch_size"]["source"]
    assert rows["exchange"]["source"] == "LOGCTL_EXCHANGE"
    assert rows["url"]["source"] == "LOGCTL_URL"  # env beats the file
    assert "hunter2" not in result.stdout


def _publish_raw(env: Env, body: bytes, content_type: str, routing_key: str = "x.info") -> None:
    conn = amqp_connect()
    ch = conn.channel()
    ch.confirm_select()
    ch.basic_publish(amqp.Message(body, content_type=content_type), exchange=env.exchange, routing_key=routing_key)
    conn.close()


def test_a_batch_whose_attrs_json_cannot_hold_is_stored_and_consume_goes_on(env: Env, tmp_path: Path) -> None:
    """msgpack allows map keys of any type, and JSON integers beyond 64 bits. Such a batch
    once stopped consume (exit 1) at every start, as it came back each time; now those
    parts are stored as text."""
    db, jsonl = tmp_path / "out.db", tmp_path / "out.jsonl"
    for sink in (f"sqlite:///{db}", f"file://{jsonl}"):
        queue = ["--queue", f"{env.exchange}.{sink[:4]}"]
        first = run_logctl(["consume", *queue, "--exit-when-idle", "0.5s", "--sink", "stdout"], env)  # binds it
        assert first.returncode == 0, first.stderr
    rows = [
        ["odd-1", 1_795_000_000_000_000, "INFO", "api", "int key", None, {1: "one"}],
        ["odd-2", 1_795_000_000_000_000, "INFO", "api", "nested", None, {"k": {None: [True]}}],
    ]
    _publish_raw(env, msgpack.packb({"v": 1, "records": rows}), MSGPACK_TYPE)
    big = b'{"v":1,"records":[["odd-3",1795000000000000,"INFO","api","big int",null,{"n":%d}]]}' % 2**70
    _publish_raw(env, big, JSON_TYPE)
    for sink in (f"sqlite:///{db}", f"file://{jsonl}"):
        queue = ["--queue", f"{env.exchange}.{sink[:4]}"]
        result = run_logctl(["consume", *queue, "--exit-when-idle", "1s", "--sink", sink], env)
        assert result.returncode == 0, result.stderr
        assert "stored=3" in result.stderr and "dead_lettered=0" in result.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select message, attrs from records order by id").fetchall() == [
            ("int key", '{"1":"one"}'),
            ("nested", '{"k":{"None":[true]}}'),
            ("big int", f'{{"n":"{2**70}"}}'),
        ]
    stored = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["attrs"] for r in stored] == [{"1": "one"}, {"k": {"None": [True]}}, {"n": str(2**70)}]


def test_undecodable_message_is_dead_lettered_and_foreign_text_is_stored(env: Env, tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    first = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"sqlite:///{db}"], env)  # declares topology
    assert first.returncode == 0, first.stderr
    _publish_raw(env, b"\xc1 not msgpack", MSGPACK_TYPE)
    _publish_raw(env, b"ERROR plain text from another tool", "text/plain")
    result = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    assert "dead_lettered=1" in result.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("select level, message from records").fetchall() == [
            ("ERROR", "plain text from another tool")
        ]
    dlq = run_logctl(["consume", "--queue", f"{env.exchange}.dlq", "--exit-when-idle", "1s", "--sink", "stdout"], env)
    assert dlq.returncode == 0, dlq.stderr
    # Still undecodable, and the dead-letter queue has nowhere further to send it: it
    # stays there (it used to be rejected, which deleted it), and consume does not loop.
    assert "dead_lettered=0 kept_undecodable=1" in dlq.stderr
    conn = amqp_connect()
    assert conn.channel().queue_declare(f"{env.exchange}.dlq", passive=True)[1] == 1
    conn.close()


def test_tail_shows_records_at_or_above_the_level_as_json(env: Env, tmp_path: Path) -> None:
    args = ["tail", "--level", "ERROR", "--count", "2", "--output", "json"]
    tail = start_logctl(args, env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # let tail bind its queue
        log = tmp_path / "svc.log"
        log.write_text(
            '{"level":"info","msg":"quiet"}\n{"level":"error","msg":"loud"}\n{"level":"fatal","msg":"louder"}\n'
        )
        assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
        out, err = tail.communicate(timeout=30)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["level"], r["message"]) for r in records] == [("ERROR", "loud"), ("FATAL", "louder")]


def test_second_ship_on_one_state_dir_is_refused_naming_the_holder(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "f.log"
    log.write_text("a\n")
    first = start_logctl(["ship", str(log)], env, stdout=None, text=True)
    try:
        deadline = time.time() + 20
        while not (env.state_dir / "checkpoints.json").exists() and time.time() < deadline:
            time.sleep(0.2)
        second = run_logctl(["ship", str(log)], env)
        assert second.returncode == 10
        assert f"pid {first.pid}" in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=30)
    assert first.returncode == 0


def test_dry_run_prints_records_in_file_order_also_with_workers(env: Env, tmp_path: Path) -> None:
    """Batches hold one routing key each; the preview must still read like the file."""
    lines = []
    for n in range(120_000):  # > 4 MiB, so that the parse workers take it
        kind = n % 4
        if kind == 0:
            lines.append(f'{{"level":"error","msg":"n {n}","service":"api"}}')
        elif kind == 1:
            lines.append(f'level=info msg="n {n}" service=worker')
        elif kind == 2:
            lines.append(f"2026-11-27 10:00:{n % 60:02d},123 WARNING app: n {n}")
        else:
            lines.append(f'level=debug msg="n {n}"')
    log = tmp_path / "mixed.log"
    log.write_text("\n".join(lines) + "\n")
    assert log.stat().st_size > 4 << 20
    for workers in ("0", "2"):
        result = run_logctl(
            ["ship", "--no-follow", "--dry-run", "--workers", workers, "--output", "json", str(log)], env
        )
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        numbers = [int(r["message"].rsplit(" ", 1)[1]) for r in records]
        assert numbers == list(range(120_000)), f"--workers {workers}: out of file order"
        assert {r["level"] for r in records[:4]} == {"ERROR", "INFO", "WARN", "DEBUG"}


def test_status_lists_confirmed_offsets_as_ship_status_does(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text('level=info msg="one"\nlevel=error msg="two"\n')
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    status = run_logctl(["status", "--output", "json"], env)
    assert status.returncode == 0, status.stderr
    rows = [json.loads(line) for line in status.stdout.splitlines()]
    assert rows == [{"path": str(log), "offset": log.stat().st_size, "size": log.stat().st_size, "behind": 0}]
    assert run_logctl(["ship", "--status", "--output", "json"], env).stdout == status.stdout


def test_commands_are_listed_in_the_order_users_meet_them() -> None:
    from logctl.cli.app import COMMAND_ORDER

    result = runner.invoke(app, ["--help"], env={"COLUMNS": "100", "NO_COLOR": "1"})
    commands = result.stdout.partition("Commands:")[2]
    listed = [line.split()[0] for line in commands.splitlines() if line.startswith("  ") and line.split()]
    shown = [name for name in listed if name in COMMAND_ORDER]
    assert shown == list(COMMAND_ORDER)


def test_quiet_silences_notices_but_not_errors(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text('level=info msg="one"\n')
    quiet = run_logctl(["--quiet", "ship", "--no-follow", str(log)], env)
    assert quiet.returncode == 0 and quiet.stderr == ""
    failed = run_logctl(["-q", "ship", "--no-follow", str(tmp_path / "missing.log")], env)
    assert failed.returncode == 5 and "no such file" in failed.stderr


def test_ctrl_c_exits_130_after_cleaning_up_and_sigterm_exits_0(env: Env, tmp_path: Path) -> None:
    for signum, code in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        log = tmp_path / f"{signum}.log"
        log.write_text("".join(f'level=info msg="line {i}"\n' for i in range(100)))
        ship = start_logctl(["ship", "--linger-ms", "20", str(log)], env, text=True)
        time.sleep(2.5)  # read and confirmed
        ship.send_signal(signum)
        _out, err = ship.communicate(timeout=60)
        assert ship.returncode == code, err
        assert "shipped lines=100" in err  # it finished, flushed and said so
    status = run_logctl(["status", "--output", "json"], env)
    assert all(r["behind"] == 0 for r in map(json.loads, status.stdout.splitlines()))


def _complete(words: str, env: dict[str, str]) -> list[str]:
    """What bash completion offers after ``words`` (Typer's protocol, as the script in completions/ asks it)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    completion_env = {**env, "COMP_WORDS": words, "COMP_CWORD": str(cword), "_LOGCTL_COMPLETE": "complete_bash"}
    program = str(Path(sys.executable).with_name("logctl"))  # the console script: completion keys on its name
    result = subprocess.run(
        [program],
        env={**os.environ, **completion_env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout.split()


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        ("logctl policy diff q", ["quorum-log"]),
        ("logctl policy show u", ["unrouted-ae", "unrouted-cap"]),
        ("logctl tail --level ", ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"]),
        ("logctl query --level E", ["ERROR"]),
        ("logctl replay dlq --level W", ["WARN"]),
        ("logctl ship --serializer ", ["msgpack", "json"]),
        ("logctl replay dlq --reason ", ["rejected", "expired", "maxlen", "delivery_limit"]),
        ("logctl consume --queue-type ", ["quorum", "classic"]),
        ("logctl bench publish --queue-type s", ["stream"]),
        ("logctl query --count-by ", ["level", "service", "1m", "5m", "1h", "1d"]),
    ],
)
def test_completion_offers_an_options_values_not_file_names(env: Env, words: str, offered: list[str]) -> None:
    assert _complete(words, env) == offered


def test_completion_offers_presets_queues_and_contexts(env: Env, tmp_path: Path) -> None:
    assert "ha-log" in _complete("logctl policy apply h", env)
    queue = env.queue("completed")
    made = run_logctl(["consume", "--queue", queue, "--exit-when-idle", "0.1s", "--sink", "stdout"], env)
    assert made.returncode == 0, made.stderr
    offered = _complete(f"logctl replay {env.exchange}", env)
    assert queue in offered and f"{env.exchange}.dlq" in offered
    assert queue in _complete(f"logctl consume --queue {env.exchange}.c", env)
    config = tmp_path / "contexts.toml"
    config.write_text('[contexts.prod]\nurl = "amqp://localhost"\n[contexts.local]\nurl = "amqp://localhost"\n')
    assert _complete("logctl --context ", {**env, "LOGCTL_CONFIG": str(config)}) == ["local", "prod"]
    unreachable = {
        **env,
        "LOGCTL_URL": "amqp://guest:guest@127.0.0.1:1//",
        "LOGCTL_MANAGEMENT_URL": "http://127.0.0.1:1",
    }
    assert _complete("logctl replay ", unreachable) == ["dlq"]  # silent when the API is away


def _tail_while_shipping(env: Env, log: Path, args: list[str]) -> str:
    tail = start_logctl(["tail", *args], {**env, "NO_COLOR": "1"}, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # let tail bind its queue
        assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    return out


def test_tail_shows_a_files_records_in_file_order_though_each_level_travels_apart(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "mixed.log"
    levels = ["INFO", "ERROR"] * 1500  # two routing keys: two batches, published one after the other
    log.write_text("".join(f"2026-12-03T10:00:00Z {lvl} line {i}\n" for i, lvl in enumerate(levels)))
    out = _tail_while_shipping(env, log, ["--count", str(len(levels)), "--output", "json"])
    shown = [json.loads(line)["message"] for line in out.splitlines()]
    assert shown == [f"line {i}" for i in range(len(levels))]


def test_tail_indents_a_records_traceback_and_puts_its_attrs_on_their_own_line(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "crash.log"
    log.write_text(
        "2026-12-03T10:00:00Z ERROR worker failed user=42\n"
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in <module>\n'
        "ZeroDivisionError: division by zero\n"
        "2026-12-03T10:00:01Z INFO after user=43\n"
    )
    out = _tail_while_shipping(env, log, ["--count", "2", "--output", "human"])
    lines = out.splitlines()
    assert lines[0].endswith("ERROR crash worker failed user=42")
    assert lines[1:4] == [
        "    Traceback (most recent call last):",
        '      File "app.py", line 3, in <module>',
        "    ZeroDivisionError: division by zero",
    ]
    assert lines[4] == f"    log.file.path={log}"  # attrs on their own line, under the record
    assert lines[5].endswith(f"INFO  crash after user=43 log.file.path={log}")  # one line: attrs inline
    assert len(lines) == 6
