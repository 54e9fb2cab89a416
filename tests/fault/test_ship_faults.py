"""Fault tests: kill, rotate and truncate under a running ship, then count every line in the sink."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Env, run_logctl, sink_messages, start_logctl
from tests.numbered import NumberedWriter, assert_exactly_once, numbered, sequence_numbers

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def start_ship(env: Env, *paths: str) -> subprocess.Popen[bytes]:
    return start_logctl(["ship", "--rotate-wait", "1s", "--linger-ms", "50", *paths], env)


def stop_ship(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()


def stored_messages(env: Env, tmp_path: Path) -> list[str]:
    """Consume the queue into SQLite; return the messages stored there, sorted."""
    db = tmp_path / "sink.db"
    result = run_logctl(["consume", "--exit-when-idle", "10s", "--sink", f"sqlite:///{db}"], env)
    assert result.returncode == 0, result.stderr
    return sorted(sink_messages(db))


def shipped_numbers(env: Env, tmp_path: Path) -> list[int]:
    """Consume the queue into SQLite; return the line numbers stored there."""
    return sequence_numbers(stored_messages(env, tmp_path))


def wait_caught_up(env: Env, path: Path, timeout: float = 60) -> None:
    """Wait until the checkpoint covers the file (every line confirmed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = run_logctl(["ship", "--status", "--output", "json"], env)
        rows = [json.loads(line) for line in status.stdout.splitlines()]
        if any(r["path"] == str(path) and r["behind"] == 0 for r in rows):
            return
        time.sleep(0.5)
    raise AssertionError("ship did not catch up")


def test_kill_9_at_random_moments_loses_and_doubles_nothing(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    writer = NumberedWriter(log)
    writer.start()
    rng = random.Random(1234)
    for _ in range(10):
        proc = start_ship(env, str(log))
        time.sleep(rng.uniform(0.5, 2.0))
        proc.kill()  # SIGKILL: no cleanup at all
        proc.wait()
    written = writer.stop()
    final = start_ship(env, str(log))
    wait_caught_up(env, log)
    stop_ship(final)
    assert_exactly_once(shipped_numbers(env, tmp_path), written)


def test_rename_and_create_rotation_under_load(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    writer = NumberedWriter(log, rate_per_s=10000)
    writer.start()
    proc = start_ship(env, str(log))
    for n in range(3):
        time.sleep(1.5)
        with writer.lock:
            log.rename(tmp_path / f"app.log.{n}")
    time.sleep(1.5)
    written = writer.stop()
    time.sleep(3)  # rotate-wait passes; the old files are read to their end
    wait_caught_up(env, log)
    stop_ship(proc)
    assert_exactly_once(shipped_numbers(env, tmp_path), written)


def test_copytruncate_ships_old_and_new_content_once(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 3000))
    proc = start_ship(env, str(log))
    wait_caught_up(env, log)
    with log.open("r+") as fh:  # copytruncate: the copy is not followed, the original starts over
        fh.truncate(0)
    time.sleep(0.2)
    with log.open("a") as fh:
        fh.write(numbered(3000, 3500))
    time.sleep(2.5)  # the rescan notices the shrink
    wait_caught_up(env, log)
    stop_ship(proc)
    assert_exactly_once(shipped_numbers(env, tmp_path), 3500)


def test_truncation_while_ship_is_stopped_restarts_at_zero(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 2000))
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    log.write_text(numbered(2000, 2100))  # truncate + rewrite
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    assert_exactly_once(shipped_numbers(env, tmp_path), 2100)


def test_inode_reuse_with_other_content_is_a_new_file(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 1000))
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    log.unlink()
    log.write_text("".join(f'seq={i} level=info msg="line {i}" other=1\n' for i in range(1000, 3000)))
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    assert_exactly_once(shipped_numbers(env, tmp_path), 3000)


def test_file_deleted_while_read_and_glob_picks_up_new_files(env: Env, tmp_path: Path) -> None:
    first = tmp_path / "a.log"
    first.write_text(numbered(0, 1000))
    proc = start_ship(env, str(tmp_path / "*.log"))
    time.sleep(2)
    first.unlink()
    (tmp_path / "b.log").write_text(numbered(1000, 1500))
    time.sleep(3)
    wait_caught_up(env, tmp_path / "b.log")
    stop_ship(proc)
    assert_exactly_once(shipped_numbers(env, tmp_path), 1500)


def test_50mb_line_invalid_utf8_and_binary_junk_arrive_without_losing_neighbours(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "junk.log"
    with log.open("wb") as fh:
        fh.write(b'seq=0 level=info msg="line 0"\n')
        fh.write(b"y" * (50 << 20) + b"\n")
        fh.write(b'seq=1 level=info msg="line 1"\n')
        fh.write(b"bad \xff\xfe\x00\x01\x02 junk\n")
        fh.write(bytes(range(256)) + b"\n")
        fh.write(b'seq=2 level=info msg="line 2"\n')
    result = run_logctl(["ship", "--no-follow", str(log)], env)
    assert result.returncode == 0, result.stderr
    db = tmp_path / "sink.db"
    assert run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"], env).returncode == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select message, attrs from records order by id").fetchall()
    assert len(rows) == 7  # bytes(range(256)) holds a newline (10): two lines
    assert [m for m, _ in rows if m.startswith("line")] == ["line 0", "line 1", "line 2"]
    big = next(attrs for m, attrs in rows if m.startswith("yyy"))
    assert '"logctl.truncated_bytes":52428800' in big
    assert any('"logctl.invalid_utf8":true' in attrs for _, attrs in rows)


def test_rotation_while_ship_is_stopped_finishes_the_rotated_file(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 1000))
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    with log.open("a") as fh:
        fh.write(numbered(1000, 1500))  # written after the checkpoint...
    log.rename(tmp_path / "app.log.1")  # ...then rotated away while ship is down
    log.write_text(numbered(1500, 1700))
    result = run_logctl(["ship", "--no-follow", str(log)], env)
    assert result.returncode == 0, result.stderr
    assert "rotated to" in result.stderr
    assert_exactly_once(shipped_numbers(env, tmp_path), 1700)


def test_from_end_skips_what_was_there_before_start(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(-100, 0).replace("seq=-", "seq=old").replace("line -", "old "))
    proc = start_ship(env, "--from-end", str(log))
    time.sleep(2)
    with log.open("a") as fh:
        fh.write(numbered(0, 300))
    wait_caught_up(env, log)
    stop_ship(proc)
    assert_exactly_once(shipped_numbers(env, tmp_path), 300)


def test_ignore_older_and_exclude_leave_files_alone(env: Env, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "fresh.log").write_text(numbered(0, 100))
    (logs / "stale.log").write_text(numbered(100, 200))
    two_days_ago = time.time() - 2 * 86400
    os.utime(logs / "stale.log", (two_days_ago, two_days_ago))
    (logs / "noisy.debug.log").write_text(numbered(200, 300))
    result = run_logctl(
        ["ship", "--no-follow", "--ignore-older", "1d", "--exclude", "*.debug.log", str(logs / "*.log")], env
    )
    assert result.returncode == 0, result.stderr
    assert_exactly_once(shipped_numbers(env, tmp_path), 100)


def test_symlinked_file_is_followed_to_its_target(env: Env, tmp_path: Path) -> None:
    real = tmp_path / "real.log"
    real.write_text(numbered(0, 250))
    link = tmp_path / "current.log"
    link.symlink_to(real)
    result = run_logctl(["ship", "--no-follow", str(link)], env)
    assert result.returncode == 0, result.stderr
    assert_exactly_once(shipped_numbers(env, tmp_path), 250)


def test_copytruncate_under_a_live_writer_with_copies_followed_ships_each_line_once(env: Env, tmp_path: Path) -> None:
    """logrotate's copytruncate while lines keep coming; ship follows app.log* so it sees the copies.

    The copies repeat bytes ship already read from the original: they take the original's
    ids from where it had read, so nothing is stored twice, and what the truncation took
    from the original before ship read it comes from the copy.
    """
    import shutil

    log = tmp_path / "app.log"
    log.touch()
    writer = NumberedWriter(log, rate_per_s=8000)
    writer.start()
    proc = start_ship(env, str(tmp_path / "app.log*"))
    for n in range(1, 4):
        time.sleep(1.5)
        with writer.lock:  # logrotate's copy-then-truncate, with no write in between
            shutil.copyfile(log, tmp_path / f"app.log.{n}")
            with log.open("r+") as fh:
                fh.truncate(0)
    time.sleep(1.5)
    written = writer.stop()
    time.sleep(3)
    for path in [log, *(tmp_path / f"app.log.{n}" for n in range(1, 4))]:
        wait_caught_up(env, path)
    stop_ship(proc)
    assert_exactly_once(shipped_numbers(env, tmp_path), written)


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(c) for c in fh.read().split()]
    except FileNotFoundError:
        return []


def wait_gone(pids: list[int], timeout: float = 10) -> None:
    def running(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
        except FileNotFoundError:
            return False

    deadline = time.time() + timeout
    while any(running(p) for p in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if running(p)], "processes outlived the killed ship"


def confirmed_offset(env: Env, path: Path) -> int:
    """How far ship's checkpoint says ``path`` is confirmed (0 before its first checkpoint)."""
    status = run_logctl(["ship", "--status", "--output", "json"], env)
    rows = [json.loads(line) for line in status.stdout.splitlines()]
    return next((r["offset"] for r in rows if r["path"] == str(path)), 0)


def test_kill_9_while_workers_parse_a_large_backlog_loses_and_doubles_nothing(env: Env, tmp_path: Path) -> None:
    """A file far behind is parsed by worker processes; kills land while blocks are in flight."""
    log = tmp_path / "big.log"
    total = 2_000_000
    with log.open("w") as fh:
        for start in range(0, total, 1000):
            fh.write(
                "".join(
                    f'seq={i} level=info msg="line {i}"\n'
                    # multi-line records, some of them across block boundaries
                    + ("  at frame one\n  at frame two\n" if i % 7 == 0 else "")
                    for i in range(start, start + 1000)
                )
            )
    size = log.stat().st_size
    assert size > 80 << 20  # more than one run ships between a kill and the next (2.5 s at 30 MB/s)
    offsets = [0]
    cmd = ["ship", "--no-follow", "--workers", "2", str(log)]
    # Two kills before ship's first checkpoint save (1 s after the workers appear), and two
    # once a save has moved the checkpoint on (waited for, not timed: a loaded machine is
    # slower), so that some runs leave progress behind and some do not.
    for delay in (0.1, None, 0.5, None):
        proc = start_logctl(cmd, env)
        deadline = time.time() + 30
        while len(child_pids(proc.pid)) < 3 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)  # the resource tracker and two workers: blocks are being parsed
        if delay is not None:
            time.sleep(delay)
        else:
            deadline = time.time() + 60
            while confirmed_offset(env, log) <= max(offsets) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.1)
        workers = child_pids(proc.pid)
        assert proc.poll() is None and workers, "ship finished before the kill: make the file bigger"
        proc.kill()
        proc.wait()
        wait_gone(workers)  # a killed ship leaves no process behind
        offsets.append(confirmed_offset(env, log))
    assert any(0 < off < size for off in offsets), offsets  # some kills left progress, part-way
    result = run_logctl(["ship", "--no-follow", "--workers", "2", str(log)], env)
    assert result.returncode == 0, result.stderr
    numbers = shipped_numbers(env, tmp_path)
    assert_exactly_once(numbers, total)


def test_stdin_killed_mid_stream_then_piped_again_under_its_source_id_stores_each_line_once(
    env: Env, tmp_path: Path
) -> None:
    """stdin has no checkpoint: a named stream shipped again from the start is stored once."""
    total = 40_000
    proc = start_logctl(["ship", "-", "--source-id", "nightly", "--linger-ms", "50"], env, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    for start in range(0, total // 2, 1000):  # half the stream, in bursts, with the pipe kept open
        proc.stdin.write(numbered(start, start + 1000).encode())
        proc.stdin.flush()
        time.sleep(0.02)
    time.sleep(1.0)  # let some batches be confirmed
    proc.stdin.write(numbered(total // 2, total // 2 + 500).encode())
    proc.stdin.flush()
    proc.kill()  # while the last burst is being read, batched or published
    proc.wait()
    before = shipped_numbers(env, tmp_path)
    assert 0 < len(before) < total, len(before)  # the kill landed part-way
    again = run_logctl(["ship", "-", "--source-id", "nightly"], env, input=numbered(0, total))
    assert again.returncode == 0, again.stderr
    assert_exactly_once(shipped_numbers(env, tmp_path), total)


def test_sigterm_while_stdin_is_open_ships_every_line_read(env: Env, tmp_path: Path) -> None:
    """stdin cannot be read again: on SIGTERM its open record and its partial last line ship too."""
    proc = start_logctl(["ship", "-", "--linger-ms", "50"], env, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(numbered(0, 999).encode())
    proc.stdin.flush()
    time.sleep(2)
    proc.stdin.write(numbered(999, 1000).encode() + b'seq=1000 level=info msg="line 1000"')  # no newline yet
    proc.stdin.flush()
    time.sleep(0.3)  # read, and within the wait for continuation lines of line 999's record
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert_exactly_once(shipped_numbers(env, tmp_path), 1001)


def test_a_followed_file_keeps_its_partial_line_when_ship_stops_after_stdin_ended(env: Env, tmp_path: Path) -> None:
    """Files and stdin at once: stdin's end is no reason to cut a file's half-written line in two."""
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 10) + 'seq=10 level=info msg="li')  # the writer is mid-line
    proc = start_logctl(["ship", "--linger-ms", "50", str(log), "-"], env, stdin=subprocess.DEVNULL)  # ends at once
    time.sleep(3)
    stop_ship(proc)
    with log.open("a") as fh:
        fh.write('ne 10"\n' + numbered(11, 20))
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    assert stored_messages(env, tmp_path) == sorted(f"line {i}" for i in range(20))


def _compress(kind: str, data: bytes) -> bytes:
    import bz2
    import gzip
    import lzma

    import zstandard

    return {
        "gz": gzip.compress,
        "xz": lzma.compress,
        "bz2": bz2.compress,
        "zst": zstandard.ZstdCompressor().compress,
    }[kind](data)


def test_compressed_rotations_are_read_once_by_content_renamed_or_killed_and_binaries_skipped(
    env: Env, tmp_path: Path
) -> None:
    """logrotate's compressed rotations hold text: shipped once each, whatever happens to ship or the name."""
    logs = tmp_path / "logs"
    logs.mkdir()
    per_file = 300_000  # the .gz holds 3 s of lines at the rate of the first run below
    for n, kind in enumerate(("gz", "xz", "bz2", "zst")):
        text = numbered(n * per_file, (n + 1) * per_file if kind == "gz" else n * per_file + 1000).encode()
        (logs / f"app.log.{n + 1}.{kind}").write_bytes(_compress(kind, text))
    expected = list(range(per_file)) + [n * per_file + i for n in (1, 2, 3) for i in range(1000)]
    (logs / "core.log").write_bytes(b"\x7fELF\x02\x01\x01\x00" + os.urandom(4096))  # binary, whatever its name
    pattern = str(logs / "*")
    cmd = ["ship", "--no-follow", pattern]
    # At most 100,000 lines a second, the .gz takes 3 s however fast the machine: the kill
    # lands part-way through it (at full speed a fast machine shipped it before a checkpoint).
    proc = start_logctl([*cmd, "--max-rate", "100000"], env)
    big = logs / "app.log.1.gz"
    deadline = time.time() + 60
    while confirmed_offset(env, big) == 0 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "ship finished before the kill: make the file bigger"
    proc.kill()
    proc.wait()
    first = run_logctl(cmd, env)  # on from the checkpoint of each archive's content
    assert first.returncode == 0, first.stderr
    assert f"skipping {logs / 'core.log'}: a binary file" in first.stderr
    (logs / "app.log.1.gz").rename(logs / "app.log.2.gz.tmp")  # the next rotation renames every archive
    for n in (2, 3, 4):
        kind = ("xz", "bz2", "zst")[n - 2]
        (logs / f"app.log.{n}.{kind}").rename(logs / f"app.log.{n + 1}.{kind}")
    (logs / "app.log.2.gz.tmp").rename(logs / "app.log.2.gz")
    again = run_logctl(cmd, env)
    assert again.returncode == 0, again.stderr
    assert "records=0" in again.stderr and "compressed, reading" not in again.stderr, again.stderr
    assert_exactly_once(shipped_numbers(env, tmp_path), expected)


def test_a_ship_killed_between_declaring_the_default_queue_and_binding_it_is_finished_by_the_next(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state a kill -9 in the first second of a first run can leave: the default queue
    declared, not bound, so that every record would go to the unrouted queue for good."""
    from logctl.config import resolve
    from logctl.records import routing_word
    from logctl.transport import Broker, TopologyOnce, topology, topology_of

    settings = resolve({}, dict(env), None)
    real = topology.declare_consumer_queue

    def killed_before_binding(broker: Broker, topo: topology.Topology, queue: str, _patterns: object) -> None:
        real(broker, topo, queue, ())  # declared, bound by nothing
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(topology, "declare_consumer_queue", killed_before_binding)
    marker = env.state_dir / f"declaring-{routing_word(env.exchange)}"
    broker = Broker(settings, lambda _m: None)
    broker.connect(0)
    try:
        with pytest.raises(KeyboardInterrupt):
            TopologyOnce(marker).declare(broker, topology_of(settings))
    finally:
        broker.close()
    assert marker.exists()
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 100))
    result = run_logctl(["ship", "--no-follow", str(log)], env)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert_exactly_once(shipped_numbers(env, tmp_path), 100)  # in the default queue, not the unrouted one
