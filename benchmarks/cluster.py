"""The three-node cluster of scripts/cluster, measured: ship against the single broker, and node loss.

    .venv/bin/python benchmarks/cluster.py                      # 300,000 lines; all three faults
    .venv/bin/python benchmarks/cluster.py --lines 1000000 --rate 5000

1. ``logctl ship --no-follow`` of one file of mixed formats into the default quorum queue
   of the system broker (one node), then of the cluster (three replicas), same file, same run.
2. Node loss: a writer appends numbered lines at ``--rate`` while ship follows the file and
   consume stores into SQLite, both on the cluster's failover URL. Mid-way one fault: the
   quorum leader killed, the node both are connected to frozen (SIGSTOP) for 15 s, and
   the leader killed under ``policy apply ha-log`` on a classic queue. Afterwards: lines
   written, records in the sink, lost, doubled, and the longest pause after the fault
   of ship (its confirmed-records counter, from --metrics-address) and of consume (the
   sink's row count), each polled ten times a second.

It starts the cluster when it is not up (and then stops it at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logctl.bench import synthetic_lines  # noqa: E402

CLUSTER = ROOT / "scripts" / "cluster"
HEARTBEAT = "5"  # seconds; a frozen node is left after about two


def cluster(*args: str) -> str:
    return subprocess.run([str(CLUSTER), *args], check=True, capture_output=True, text=True).stdout


def logctl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "logctl", *args], env=env, capture_output=True, text=True)


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "logctl", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def leader(queue: str) -> int | None:
    for line in cluster("ctl", "2", "list_queues", "name", "leader").splitlines():
        name, _, node = line.partition("\t")
        if name == queue and node.startswith("n"):
            return int(node[1])
    return None


def ship_rate(path: Path, env: dict[str, str], work: Path) -> float:
    state = work / f"state-{uuid.uuid4().hex[:6]}"
    result = logctl(["ship", "--no-follow", str(path)], {**env, "LOGCTL_STATE_DIR": str(state)})
    found = re.search(r"lines_per_s=(\d+)", result.stderr)
    if result.returncode != 0 or not found:
        raise SystemExit(f"ship failed: {result.stderr}")
    return float(found.group(1))


class Writer(threading.Thread):
    """Numbered logfmt lines at a steady rate."""

    def __init__(self, path: Path, rate: int) -> None:
        super().__init__(daemon=True)
        self.path, self.rate, self.written, self.halt = path, rate, 0, threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        with self.path.open("a") as fh:
            while not self.halt.is_set():
                burst = range(self.written, self.written + 100)
                fh.write("".join(f'seq={i} level=info msg="line {i}"\n' for i in burst))
                fh.flush()
                self.written += 100
                self.halt.wait(max(0.0, started + self.written / self.rate - time.monotonic()))


class Poller(threading.Thread):
    """Samples a counter ten times a second; the longest time it stood still after ``since``."""

    def __init__(self, read: Callable[[], int]) -> None:
        super().__init__(daemon=True)
        self.read, self.halt = read, threading.Event()
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self.halt.is_set():
            with contextlib.suppress(Exception):  # not up yet, or between connections
                self.samples.append((time.monotonic(), self.read()))
            self.halt.wait(0.1)

    def longest_pause(self, since: float) -> float:
        longest, last_change, last_value = 0.0, since, None
        for when, value in self.samples:
            if when < since:
                last_value = value
                continue
            if value != last_value:
                longest = max(longest, when - last_change)
                last_change, last_value = when, value
        return longest


def confirmed_records(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as response:
        text = response.read().decode()
    return int(sum(float(m) for m in re.findall(r"^logctl_confirmed_records_total(?:\{[^}]*\})? (\S+)$", text, re.M)))


def stored(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("select count(*) from records").fetchone()[0])
    except sqlite3.Error:
        return 0


def numbers(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [int(m.split()[1]) for (m,) in conn.execute("select message from records")]


@dataclass
class Outcome:
    fault: str
    written: int
    in_sink: int
    lost: int
    doubled: int
    ship_pause: float
    consume_pause: float


def node_loss(name: str, env: dict[str, str], work: Path, rate: int, fault: Callable[[str], None]) -> Outcome:
    exchange = f"nodeloss-{uuid.uuid4().hex[:6]}"
    run = work / exchange
    run.mkdir()
    log, db, port = run / "app.log", run / "sink.db", free_port()
    env = {**env, "LOGCTL_EXCHANGE": exchange, "LOGCTL_STATE_DIR": str(run / "state")}
    queue = f"{exchange}.default"
    extra: list[str] = []
    if name == "ha-log":
        queue = f"{exchange}.mirrored"
        env["LOGCTL_DEFAULT_QUEUE"] = "none"
        logctl(["policy", "apply", "ha-log", "--set", "ha-params=3"], env)
        declare = ["consume", "--queue", queue, "--queue-type", "classic", "--bind", "#", "--exit-when-idle", "1s"]
        logctl([*declare, "--sink", f"sqlite:///{run / 'declare.db'}"], env)
        extra = ["--queue", queue]
        time.sleep(3)  # mirrors synchronise (checked through the API in tests/cluster)
    log.touch()
    consume = start(["consume", "--sink", f"sqlite:///{db}", *extra], env)
    writer = Writer(log, rate)
    writer.start()
    ship = start(["ship", "--linger-ms", "50", "--metrics-address", f"127.0.0.1:{port}", str(log)], env)
    ship_poll, sink_poll = Poller(lambda: confirmed_records(port)), Poller(lambda: stored(db))
    ship_poll.start()
    sink_poll.start()
    while stored(db) < rate * 2:
        time.sleep(0.2)
    fault_at = time.monotonic()
    fault(queue)
    time.sleep(5)
    writer.halt.set()
    writer.join()
    written = writer.written
    deadline = time.monotonic() + 180
    while stored(db) < written and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)
    for proc in (ship, consume):
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    ship_poll.halt.set()
    sink_poll.halt.set()
    got = numbers(db)
    unique = set(got)
    if name == "ha-log":
        logctl(["policy", "delete", "ha-log"], env)
    return Outcome(
        name,
        written,
        len(got),
        len(set(range(written)) - unique),
        len(got) - len(unique),
        ship_poll.longest_pause(fault_at),
        sink_poll.longest_pause(fault_at),
    )


def heal() -> None:
    for n in (1, 2, 3):
        subprocess.run([str(CLUSTER), "thaw", str(n)], capture_output=True)
    for n in (1, 2, 3):
        subprocess.run([str(CLUSTER), "start", str(n)], capture_output=True)
    cluster("ctl", "1", "--timeout", "120", "await_online_nodes", "3")


def kill_leader(queue: str) -> None:
    node = leader(queue) or 1
    cluster("kill", str(node))


def kill_master(queue: str) -> None:
    for line in cluster("ctl", "2", "list_queues", "name", "pid").splitlines():
        name, _, pid = line.partition("\t")
        if name == queue:
            cluster("kill", re.search(r"n(\d)@", pid).group(1))  # type: ignore[union-attr]
            return
    cluster("kill", "1")


def freeze_first(_queue: str) -> None:
    cluster("freeze", "1")
    time.sleep(15)
    cluster("thaw", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=300_000, help="lines in the file shipped to both")
    parser.add_argument("--rate", type=int, default=2000, help="lines a second written during node loss")
    opts = parser.parse_args()
    was_up = "running" in cluster("status")
    cluster("up")
    work = Path(tempfile.mkdtemp(prefix="logctl-cluster-bench-"))
    url = cluster("url").strip()
    base = {**os.environ, "NO_COLOR": "1", "LOGCTL_CONFIG": str(work / "absent.toml")}
    clustered = {**base, "LOGCTL_URL": url, "LOGCTL_HEARTBEAT": HEARTBEAT,
                 "LOGCTL_MANAGEMENT_URL": "http://guest:guest@127.0.0.1:15701"}  # fmt: skip
    try:
        path = work / "mixed.log"
        with path.open("w") as fh:
            fh.writelines(line + "\n" for line in synthetic_lines(opts.lines, 100))
        single_env = {**base, "LOGCTL_EXCHANGE": f"single-{uuid.uuid4().hex[:6]}"}
        three_env = {**clustered, "LOGCTL_EXCHANGE": f"three-{uuid.uuid4().hex[:6]}"}
        single = ship_rate(path, single_env, work)
        three = ship_rate(path, three_env, work)
        print(f"ship --no-follow, {opts.lines:,} mixed lines, into the default quorum queue:")
        print(f"  single system broker      {single:>10,.0f} lines/s")
        print(f"  three-node cluster        {three:>10,.0f} lines/s   ({three / single:.2f}x the single broker)")
        print(f"\nnode loss at {opts.rate:,} lines/s, ship and consume on the 3 nodes, heartbeat {HEARTBEAT} s:")
        header = ("fault", "written", "in sink", "lost", "doubled", "ship pause", "consume pause")
        print("  {:<34}{:>9}{:>9}{:>6}{:>9}{:>12}{:>15}".format(*header))
        for name, fault in (
            ("quorum leader killed (SIGKILL)", kill_leader),
            ("connected node frozen 15 s", freeze_first),
            ("ha-log", kill_master),
        ):
            heal()
            o = node_loss(name, clustered, work, opts.rate, fault)
            label = "classic mirrored master killed" if name == "ha-log" else name
            print(f"  {label:<34}{o.written:>9,}{o.in_sink:>9,}{o.lost:>6}{o.doubled:>9}"
                  f"{o.ship_pause:>11.1f}s{o.consume_pause:>14.1f}s", flush=True)  # fmt: skip
    finally:
        heal()
        if not was_up:
            cluster("down", "--purge")


if __name__ == "__main__":
    main()
