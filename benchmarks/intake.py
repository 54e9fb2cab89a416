"""The HTTP intake under wrk, against a minimal endpoint that publishes without confirms.

    .venv/bin/python benchmarks/intake.py                    # 64 connections, 10 s each
    .venv/bin/python benchmarks/intake.py --connections 128 --seconds 20
    .venv/bin/python benchmarks/intake.py --listen-workers 1,2,3

Both servers take the same NDJSON bodies of 16 records (POST, wrk's Lua script):

1. ``logctl ship --listen``: answers 202 only once the broker confirmed every record of
   the request; records of concurrent requests share messages.
2. The baseline, the way the original design's service did it: the same ASGI stack
   (Starlette on uvicorn with httptools), each request body published as one message,
   no confirm, answered at once (a 202 there means nothing about durability).

It prints requests/s, records/s and the latency percentiles wrk measured, and the ratio.
Needs Debian's wrk (apt-get install wrk) and the local RabbitMQ.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS_PER_BODY = 16

BASELINE = '''
import sys, amqp, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
conn.connect()
channel = conn.channel()
exchange = sys.argv[2]
channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
channel.queue_declare(exchange + ".q", durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
channel.queue_bind(exchange + ".q", exchange, "#")

async def post_log(request):
    body = await request.body()
    channel.basic_publish(amqp.Message(body, content_type="application/x-ndjson", delivery_mode=2), exchange, "app.info")
    return JSONResponse({"accepted": True}, 202)

app = Starlette(routes=[Route("/api/log", post_log, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False, http="httptools")
'''


def lua_script(path: Path) -> None:
    records = "".join(
        json.dumps({"level": "info", "service": "bench", "message": f"request {i} handled", "trace_id": f"t{i}"}) + "\n"
        for i in range(RECORDS_PER_BODY)
    )
    path.write_text(
        textwrap.dedent(
            f"""
            wrk.method = "POST"
            wrk.headers["Content-Type"] = "application/x-ndjson"
            wrk.body = {json.dumps(records)}
            """
        )
    )


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 405:  # up, and only takes POST
                return
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"{url} did not come up")
        time.sleep(0.2)


def run_wrk(base: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), f"{base}/api/log"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct in ("50", "90", "99"):
        found = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if found:
            value, unit = float(found.group(1)), found.group(2)
            figures[f"p{pct}_ms"] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    figures["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    statuses = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    figures["non_2xx"] = float(statuses.group(1)) if statuses else 0.0
    return figures


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument(
        "--listen-workers", type=lambda text: [int(n) for n in text.split(",")], default=[1, 2],
        help="the intake's process counts to run, e.g. 1,2 (each against the same baseline)",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="logctl-intake-bench-"))
    script = workdir / "post.lua"
    lua_script(script)
    exchange = f"bench-intake-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LOGCTL_EXCHANGE": exchange, "LOGCTL_STATE_DIR": str(workdir / "state"), "NO_COLOR": "1"}
    results = {}

    accepted = 0.0
    for workers in args.listen_workers:
        port = free_port()
        intake = subprocess.Popen(
            [sys.executable, "-m", "logctl", "ship", "--listen", f"127.0.0.1:{port}", "--listen-workers", str(workers)],
            env=env, cwd=ROOT, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        name = f"logctl ship --listen, {workers} process(es)"
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz")
            results[name] = run_wrk(f"http://127.0.0.1:{port}", script, args.connections, args.seconds)
        finally:
            intake.terminate()
            intake.wait(60)
        accepted += (results[name]["requests"] - results[name]["non_2xx"]) * RECORDS_PER_BODY
    stored = _stored_records(env, workdir)

    port = free_port()
    baseline = subprocess.Popen([sys.executable, "-c", BASELINE, str(port), exchange + "-naive"], cwd=ROOT)
    try:
        wait_ready(f"http://127.0.0.1:{port}/api/log")
        results["baseline: publish per request, no confirm"] = run_wrk(
            f"http://127.0.0.1:{port}", script, args.connections, args.seconds
        )
    finally:
        baseline.terminate()
        baseline.wait(60)

    _cleanup(exchange)
    print(f"{args.connections} connections, {args.seconds} s each, NDJSON bodies of {RECORDS_PER_BODY} records")
    for name, f in results.items():
        print(
            f"{name:42} {f['requests_per_s']:9,.0f} req/s {f['requests_per_s'] * RECORDS_PER_BODY:10,.0f} records/s"
            f"  p50 {f.get('p50_ms', float('nan')):6.1f} ms  p90 {f.get('p90_ms', float('nan')):6.1f} ms"
            f"  p99 {f.get('p99_ms', float('nan')):6.1f} ms  non-2xx {f['non_2xx']:.0f}"
        )
    baseline_rate = results["baseline: publish per request, no confirm"]["requests_per_s"]
    for name, f in results.items():
        if name.startswith("logctl"):
            print(f"{name} / baseline: {f['requests_per_s'] / baseline_rate:.2f}x")
    verdict = "every 202 durable" if stored >= accepted else "RECORDS MISSING"
    print(f"records in the broker after the intake's runs: {stored:,} for {accepted:,.0f} answered 202 ({verdict})")


def _stored_records(env: dict[str, str], workdir: Path) -> int:
    """Drain the intake's queue into SQLite and count the records (wrk's last requests may add some)."""
    db = workdir / "sink.db"
    subprocess.run(
        [sys.executable, "-m", "logctl", "consume", "--exit-when-idle", "2s", "--sink", f"sqlite:///{db}"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("select count(*) from records").fetchone()[0])


def _cleanup(exchange: str) -> None:
    import amqp

    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest")
    conn.connect()
    channel = conn.channel()
    for queue in (f"{exchange}.default", f"{exchange}.unrouted", f"{exchange}.dlq", f"{exchange}-naive.q"):
        channel.queue_delete(queue)
    for name in (exchange, f"{exchange}.unrouted", f"{exchange}.dlx", f"{exchange}-naive"):
        channel.exchange_delete(name)
    conn.close()


if __name__ == "__main__":
    main()
