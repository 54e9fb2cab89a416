"""Soak: a writer appends numbered lines while ship is killed, files rotate and the broker restarts.

Run by hand on a development machine (it restarts the local RabbitMQ app and sets a
memory alarm on it, so do not point it at a broker others use):

    .venv/bin/python benchmarks/soak.py --minutes 10

At the end every line is counted in a SQLite sink: written, stored, lost, doubled. A
clean run removes its files and its exchanges and queues; one that lost or doubled a
line keeps them and prints where they are.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from logctl.config import resolve  # noqa: E402
from logctl.transport import Broker, delete_topology, topology_of  # noqa: E402
from tests.numbered import NumberedWriter  # noqa: E402  (the fault tests' writer)


class Ship:
    """A ``logctl ship`` subprocess whose peak RSS is sampled."""

    peak_kb = 0

    def __init__(self, env: dict[str, str], *args: str) -> None:
        cmd = [sys.executable, "-m", "logctl", "ship", "--rotate-wait", "2s", *args]
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def sample(self) -> None:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    Ship.peak_kb = max(Ship.peak_kb, int(line.split()[1]))
        except OSError:
            pass


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=int, default=5000, help="lines per second written")
    parser.add_argument("--seed", type=int, default=1)
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    work = Path(tempfile.mkdtemp(prefix="logctl-soak-"))
    log = work / "app.log"
    log.touch()
    exchange = f"soak-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "LOGCTL_EXCHANGE": exchange,
        "LOGCTL_STATE_DIR": str(work / "state"),
        "LOGCTL_CONNECT_RETRIES": "20",
    }
    counts = {"kills": 0, "rotations": 0, "broker_restarts": 0, "memory_alarms": 0}
    writer = NumberedWriter(log, opts.rate)
    writer.start()
    ship = Ship(env, str(log))
    deadline = time.time() + opts.minutes * 60
    next_action = time.time() + rng.uniform(4, 10)
    while time.time() < deadline:
        ship.sample()
        time.sleep(0.25)
        if time.time() < next_action:
            continue
        action = rng.choice(["kill", "kill", "rotate", "rotate", "broker", "alarm"])
        if action == "kill":
            ship.proc.kill()
            ship.proc.wait()
            ship = Ship(env, str(log))
            counts["kills"] += 1
        elif action == "rotate":
            with writer.lock:
                counts["rotations"] += 1
                log.rename(work / f"app.log.{counts['rotations']}")
        elif action == "broker":
            rabbitmqctl("stop_app")
            time.sleep(3)
            rabbitmqctl("start_app")
            counts["broker_restarts"] += 1
        else:
            rabbitmqctl("set_vm_memory_high_watermark", "0.0000001")
            time.sleep(4)
            rabbitmqctl("set_vm_memory_high_watermark", "0.4")
            counts["memory_alarms"] += 1
        next_action = time.time() + rng.uniform(4, 10)
    written = writer.stop()
    for _ in range(40):  # let the running ship drain, sampling memory
        ship.sample()
        time.sleep(0.5)
    ship.proc.send_signal(signal.SIGTERM)
    ship.proc.wait(timeout=120)
    # A last pass reads what is left, including files rotated while a killed ship was down.
    subprocess.run([sys.executable, "-m", "logctl", "ship", "--no-follow", str(log)], env=env, check=True)
    db = work / "sink.db"
    subprocess.run(
        [sys.executable, "-m", "logctl", "consume", "--exit-when-idle", "5s", "--sink", f"sqlite:///{db}"],
        env=env,
        check=True,
    )
    with sqlite3.connect(db) as conn:
        numbers = [int(m.split()[1]) for (m,) in conn.execute("select message from records")]
    distinct = set(numbers)
    lost, doubled = len(set(range(written)) - distinct), len(numbers) - len(distinct)
    print(f"minutes={opts.minutes:g} rate={opts.rate}/s written={written} in_sink={len(numbers)}")
    print(f"lost={lost} duplicated={doubled}")
    print(" ".join(f"{k}={v}" for k, v in counts.items()) + f" peak_rss_mb={Ship.peak_kb / 1024:.1f}")
    if lost or doubled:
        print(f"kept for a look: work dir {work}, exchange {exchange}")
        return
    settings = resolve({}, env, None)
    with Broker(settings, lambda _message: None) as broker:
        delete_topology(broker, topology_of(settings))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
