"""logctl against its baselines, measured in one run on one broker; prints figures and ratios.

    .venv/bin/python benchmarks/run.py              # 1,000,000 lines
    .venv/bin/python benchmarks/run.py --lines 200000

1. ``logctl ship --no-follow`` of a file of mixed real-world formats into a quorum queue,
   three times (``--ship-runs``): the median counts, and the ratios are of the median.
2. The naive baseline: one kombu publish per line, waiting for each confirm.
3. A real peer, where installed: syslog-ng's amqp() destination reading the same file
   (Debian: apt-get install syslog-ng-core syslog-ng-mod-amqp).
4. ``logctl consume`` of the shipped records into SQLite and into a JSON-lines file.
5. ``logctl tail --output json`` keeping up with a fast publisher.

Before each measurement the script waits for a local RabbitMQ to be idle (see settle()).
First it prints how fast this machine parses right now against the README's run (see
machine_check()): this machine's speed moves a lot from day to day.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import amqp
import kombu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logctl.bench import synthetic_lines  # noqa: E402
from logctl.codec import encode  # noqa: E402
from logctl.records import Level, LogRecord, now_utc  # noqa: E402


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (workers included), in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total / 1024


def run_logctl(args: list[str], env: dict[str, str], **kw: object) -> tuple[str, float, float]:
    """Run logctl; return (stderr, seconds, peak RSS in MB of its whole process tree, sampled)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "logctl", *args], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, **kw
    )  # type: ignore[call-overload]
    peak = [0.0]
    exited = threading.Event()

    def sample() -> None:
        # Not proc.poll(): it would reap the process before os.wait4 below could.
        while not exited.wait(0.02):
            peak[0] = max(peak[0], _tree_rss_mb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    exited.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"logctl {' '.join(args)} failed: {stderr}")
    return stderr, seconds, max(peak[0], usage.ru_maxrss / 1024)


def _beam_ticks() -> int | None:
    """CPU ticks used so far by a RabbitMQ on this machine (None if there is none to see)."""
    total, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if "(beam.smp)" in text:
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            found = True
    return total if found else None


def settle(limit_s: float = 30.0) -> None:
    """Wait until the local broker has been idle (under 5% of a core) for a second.

    Deleting a quorum queue of a million messages keeps RabbitMQ busy for a while
    afterwards; without this, each phase would pay for the clean-up of the one before.
    """
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + limit_s
    before = _beam_ticks()
    while before is not None and time.monotonic() < deadline:
        time.sleep(1.0)
        after = _beam_ticks()
        if after is None or after - before <= 0.05 * tick:
            return
        before = after


def figure(stderr: str, key: str) -> float:
    match = re.search(rf"{key}=(\d+(?:\.\d+)?)", stderr)
    return float(match.group(1)) if match else 0.0


def channel() -> tuple[amqp.Connection, amqp.Channel]:
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    return conn, conn.channel()


def cleanup(exchange: str) -> None:
    conn, ch = channel()
    for q in ("default", "unrouted", "dlq", "sng"):
        ch.queue_delete(f"{exchange}.{q}")
    for suffix in ("", ".unrouted", ".dlx"):
        ch.exchange_delete(exchange + suffix)
    conn.close()


def naive_baseline(path: Path, limit_s: float = 10.0) -> float:
    """One kombu publish per line with confirm_publish: what a first version does."""
    queue = f"naive-{uuid.uuid4().hex[:8]}"
    with kombu.Connection("amqp://guest:guest@127.0.0.1:5672//", transport_options={"confirm_publish": True}) as conn:
        q = kombu.Queue(queue, durable=True, queue_arguments={"x-queue-type": "quorum"})
        q(conn.default_channel).declare()
        producer = conn.Producer()
        sent = 0
        started = time.monotonic()
        with path.open() as fh:
            for line in fh:
                producer.publish(line, routing_key=queue, delivery_mode=2, serializer=None, content_type="text/plain")
                sent += 1
                if time.monotonic() - started > limit_s:
                    break
        rate = sent / (time.monotonic() - started)
        q(conn.default_channel).delete()
    return rate


def syslog_ng(path: Path, lines: int, work: Path) -> tuple[float, int] | None:
    """syslog-ng's amqp() destination, fed the same lines over TCP, into a quorum queue; None if not installed.

    A TCP source, as in the reference figures: syslog-ng's file source polls and would be
    measured slower than it can go. With flow control, as a shipper that must not lose
    lines runs it: without it syslog-ng drops what overflows its queue, which looked like
    a stall after 170,000-190,000 lines. Returns (lines/s while it delivered, lines
    delivered): it gives up waiting once the queue has not grown for 10 s.
    """
    binary = shutil.which("syslog-ng")
    if binary is None or not list(Path("/usr/lib/syslog-ng").glob("*/libafamqp.so")):
        return None
    exchange = f"sng-{uuid.uuid4().hex[:8]}"
    conn, ch = channel()
    ch.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
    ch.queue_declare(f"{exchange}.sng", durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
    ch.queue_bind(f"{exchange}.sng", exchange, "#")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = work / "syslog-ng.conf"
    config.write_text(
        "@version: 3.38\n"
        "options { log-fifo-size(100000); };\n"
        f'source s {{ network(ip("127.0.0.1") port({port}) transport("tcp") flags(no-parse) log-iw-size(100000)); }};\n'
        f'destination d {{ amqp(host("127.0.0.1") username("guest") password("guest") exchange("{exchange}") '
        'exchange-declare(no) routing-key("app.info") persistent(yes) body("${MESSAGE}")); };\n'
        "log { source(s); destination(d); flags(flow-control); };\n"
    )
    proc = subprocess.Popen(
        [binary, "-F", "-f", str(config), "-R", str(work / "sng.persist"), "-p", str(work / "sng.pid"),
         "-c", str(work / "sng.ctl")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):  # wait for the listener
            try:
                sender = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.1)
        else:
            return None
        started = time.monotonic()
        with sender, path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                sender.sendall(chunk)
        delivered, last_growth = 0, time.monotonic()
        while delivered < lines and time.monotonic() - last_growth < 10:
            depth = int(ch.queue_declare(f"{exchange}.sng", passive=True)[1])
            if depth > delivered:
                delivered, last_growth = depth, time.monotonic()
            time.sleep(0.1)
        seconds = last_growth - started
    finally:
        proc.terminate()
        proc.wait()
        ch.queue_delete(f"{exchange}.sng")
        ch.exchange_delete(exchange)
        conn.close()
    return delivered / max(seconds, 1e-9), delivered


def tail_rate(env: dict[str, str], records: int) -> tuple[float, str]:
    """Records/s that ``tail --output json`` renders while a publisher sends batches of 1,000 at full speed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "logctl", "tail", "--output", "json", "--count", str(records)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    shown = 0

    def count() -> None:
        nonlocal shown
        assert proc.stdout is not None
        for _line in proc.stdout:
            shown += 1

    reader = threading.Thread(target=count, daemon=True)
    reader.start()
    time.sleep(3)  # tail binds its queue
    now = now_utc()
    body, content_type = encode([LogRecord(f"t-{i:012x}", now, Level.INFO, "api", "x" * 100) for i in range(1000)])
    conn, ch = channel()
    started = time.monotonic()
    for _ in range(records // 1000):
        ch.basic_publish(
            amqp.Message(body, content_type=content_type, application_headers={"x-logctl-count": 1000}),
            exchange=env["LOGCTL_EXCHANGE"],
            routing_key="api.info",
        )
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.terminate()
        proc.wait()
    seconds = time.monotonic() - started
    reader.join(timeout=5)
    conn.close()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    return shown / seconds, stderr.strip()


def ship_runs(path: Path, lines: int, env: dict[str, str], runs: int) -> tuple[float, float, float, float]:
    """Ship the file ``runs`` times: (median lines/s, lowest, highest, peak RSS in MB).

    The last run's records stay in ``env``'s exchange for the consume phases; the runs
    before it ship into exchanges of their own, deleted at once, so that every run starts
    with the same broker (no queue of a million messages). Rates of one run move by
    10-20% on a shared machine: the median of a few is the figure to compare.
    """
    rates, peak = [], 0.0
    for run in range(runs):
        settle()
        kept = run == runs - 1
        exchange = env["LOGCTL_EXCHANGE"] if kept else f"benchmarks-again-{uuid.uuid4().hex[:8]}"
        state = env["LOGCTL_STATE_DIR"] if kept else f"{env['LOGCTL_STATE_DIR']}-{run}"
        try:
            _err, seconds, rss = run_logctl(
                ["ship", "--no-follow", str(path)], {**env, "LOGCTL_EXCHANGE": exchange, "LOGCTL_STATE_DIR": state}
            )
        finally:
            if not kept:
                cleanup(exchange)
        rates.append(lines / seconds)
        peak = max(peak, rss)
    return statistics.median(rates), min(rates), max(rates), peak


def big_file(path: Path, gigabytes: float, lines: int, work: Path) -> tuple[str, str, str]:
    """Ship a file of ``gigabytes`` (the mixed file repeated): lines/s and peak RSS of the process tree."""
    big = work / "big.log"
    copies = max(1, round(gigabytes * 1e9 / path.stat().st_size))
    with big.open("wb") as out:
        data = path.read_bytes()
        for _ in range(copies):
            out.write(data)
    os.sync()  # the file's writeback must not compete with the broker's fsyncs while measured
    exchange = f"benchmarks-big-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LOGCTL_EXCHANGE": exchange, "LOGCTL_STATE_DIR": str(work / "state-big"), "NO_COLOR": "1"}
    try:
        _err, seconds, rss = run_logctl(["ship", "--no-follow", str(big)], env)
    finally:
        cleanup(exchange)
        big.unlink()
    size = f"{copies * path.stat().st_size / 1e9:.1f} GB"
    return (
        f"logctl ship --no-follow of a {size} file",
        f"{copies * lines / seconds:,.0f} lines/s",
        f"peak RSS {rss:.0f} MB",
    )


# What benchmarks/parse.py gave on the day of the README's table: update them together.
README_PARSE_MICROS = 3.44


def machine_check() -> str:
    """How fast this machine runs logctl's parser right now, against the README's run.

    The same machine runs pure Python at very different speeds from day to day (its
    neighbours): figures of two runs compare only as far as this line does.
    """
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "parse.py"), "--interleaved-only", "--lines", "100000"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"interleaved\s+([\d.]+) us/line", out)
    assert found is not None, out
    micros = float(found.group(1))
    return (
        f"machine: parse_block on one core {micros:.2f} us/line (benchmarks/parse.py), "
        f"{README_PARSE_MICROS / micros:.0%} of the speed of the README's run"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--big-gb", type=float, default=0, help="also ship a file of this many GB (memory bound)")
    parser.add_argument("--ship-runs", type=int, default=3, help="ship the file this many times; the median counts")
    opts = parser.parse_args()
    # Byte-compile logctl, as pip does when it installs a package. With PYTHONDONTWRITEBYTECODE
    # set (this machine sets it), a checkout would compile every module at each start instead:
    # 50 ms more for ship, and 13 ms for each parse worker.
    compileall.compile_dir(ROOT / "logctl", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="logctl-benchmarks-"))
    path = work / "mixed.log"
    with path.open("w") as fh:
        fh.writelines(line + "\n" for line in synthetic_lines(opts.lines, 100))
    os.sync()  # as in big_file
    size_mb = path.stat().st_size / 1e6
    exchange = f"benchmarks-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LOGCTL_EXCHANGE": exchange, "LOGCTL_STATE_DIR": str(work / "state"), "NO_COLOR": "1"}
    rows: list[tuple[str, str, str]] = []
    print(f"{opts.lines:,} lines ({size_mb:.0f} MB) of mixed formats; RabbitMQ on 127.0.0.1, quorum queues", flush=True)
    print(machine_check(), flush=True)

    ship, low, high, rss = ship_runs(path, opts.lines, env, opts.ship_runs)
    spread = f"; {low:,.0f}-{high:,.0f} in {opts.ship_runs} runs" if opts.ship_runs > 1 else ""
    rows.append(
        ("logctl ship --no-follow (main + parse workers)", f"{ship:,.0f} lines/s", f"peak RSS {rss:.0f} MB{spread}")
    )
    if opts.big_gb:
        settle()
        rows.append(big_file(path, opts.big_gb, opts.lines, work))
    settle()
    naive = naive_baseline(path)
    rows.append(("naive: kombu publish per line, confirm each", f"{naive:,.0f} lines/s", f"ship = {ship / naive:.0f}x"))
    settle()
    sng = syslog_ng(path, opts.lines, work)
    if sng is None:
        rows.append(("syslog-ng amqp()", "not installed", "apt-get install syslog-ng-core syslog-ng-mod-amqp"))
    else:
        rate, delivered = sng
        note = f"ship = {ship / rate:.1f}x" + (
            "" if delivered >= opts.lines else f"; stalled after {delivered:,} lines"
        )
        rows.append(("syslog-ng 3.38 tcp -> amqp(), one message per line", f"{rate:,.0f} lines/s", note))

    sqlite = work / "out.db"
    settle()
    stderr, _s, rss = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{sqlite}"], env)
    rows.append(
        ("logctl consume -> SQLite", f"{figure(stderr, 'records_per_s'):,.0f} records/s", f"peak RSS {rss:.0f} MB")
    )
    run_logctl(["ship", "--no-follow", str(path)], {**env, "LOGCTL_STATE_DIR": str(work / "state2")})
    jsonl = work / "out.jsonl"
    settle()
    stderr, _s, rss = run_logctl(["consume", "--exit-when-idle", "2s", "--sink", f"file://{jsonl}"], env)
    rows.append(
        (
            "logctl consume -> JSON-lines file",
            f"{figure(stderr, 'records_per_s'):,.0f} records/s",
            f"peak RSS {rss:.0f} MB",
        )
    )

    settle()
    rate, tail_err = tail_rate(env, min(opts.lines, 300_000))
    rows.append(("logctl tail --output json", f"{rate:,.0f} records/s", tail_err.replace("logctl: ", "") or "no drops"))
    cleanup(exchange)

    width = max(len(r[0]) for r in rows)
    print()
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>20}  {note}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
