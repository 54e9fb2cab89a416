"""--metrics-address: scraped over HTTP during a real ship and consume, checked against what moved."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from logctl.codec import MSGPACK_TYPE
from tests.conftest import Env, run_logctl, sink_messages, start_logctl
from tests.integration.test_foreign import publish
from tests.numbered import numbered

pytestmark = pytest.mark.integration


def scrape(base: str) -> dict[str, float]:
    """The samples of /metrics, keyed by name and labels as written (``name{label="v"}``)."""
    with urllib.request.urlopen(base, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def metrics_url(proc: object) -> str:
    stderr = proc.stderr  # type: ignore[attr-defined]
    for _ in range(10):
        line = stderr.readline()
        found = re.search(r"metrics on (http://\S+/metrics)", line)
        if found:
            return found.group(1)
    pytest.fail("no metrics address announced")


def wait_for(check: object, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not check():  # type: ignore[operator]
        if time.time() > deadline:
            pytest.fail("the metrics never showed what moved")
        time.sleep(0.2)


def test_ship_and_consume_metrics_count_what_moved(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(numbered(0, 3000))
    ship = start_logctl(["ship", "--linger-ms", "20", "--metrics-address", "127.0.0.1:0", str(log)], env, text=True)
    try:
        url = metrics_url(ship)
        ship_key = 'component="ship"'

        def caught_up() -> bool:
            m = scrape(url)
            return m.get(f"logctl_confirmed_records_total{{{ship_key}}}") == 3000 and (
                m.get(f'logctl_file_bytes_behind{{file="{log}"}}') == 0
            )

        wait_for(caught_up)
        m = scrape(url)
        assert m[f"logctl_received_lines_total{{{ship_key}}}"] == 3000
        assert m[f"logctl_received_bytes_total{{{ship_key}}}"] == log.stat().st_size
        assert m[f"logctl_sent_records_total{{{ship_key}}}"] == 3000
        assert m[f"logctl_confirm_latency_seconds_count{{{ship_key}}}"] >= 1
        assert m['logctl_ingestion_paused{reason="broker_down"}'] == 0
        assert m['logctl_ingestion_paused{reason="blocked"}'] == 0
    finally:
        ship.send_signal(signal.SIGTERM)
        ship.communicate(timeout=60)
    assert ship.returncode == 0

    publish(env.exchange, "bad.info", b"\xc1 not msgpack", content_type=MSGPACK_TYPE)
    db = tmp_path / "out.db"
    consume = start_logctl(["consume", "--metrics-address", "127.0.0.1:0", "--sink", f"sqlite:///{db}"], env, text=True)
    try:
        url = metrics_url(consume)
        wait_for(lambda: scrape(url).get("logctl_sink_written_records_total") == 3000)
        m = scrape(url)
        assert m["logctl_sink_discarded_duplicates_total"] == 0
        assert m["logctl_sink_latency_seconds_count"] >= 1
        assert m["logctl_dead_lettered_total"] == 1
        assert m['logctl_errors_total{error_type="undecodable",stage="decode"}'] == 1
        assert m['logctl_received_lines_total{component="consume"}'] == 3000
    finally:
        consume.send_signal(signal.SIGTERM)
        consume.communicate(timeout=60)
    assert len(sink_messages(db)) == 3000


def test_a_metrics_port_in_use_is_exit_3(env: Env, tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("x\n")
    first = start_logctl(["ship", "--metrics-address", "127.0.0.1:0", str(log)], env, text=True)
    try:
        port = metrics_url(first).rsplit(":", 1)[1].split("/")[0]
        second = run_logctl(["ship", "--no-follow", "--metrics-address", f"127.0.0.1:{port}", str(log)], env)
        assert second.returncode == 3 and "cannot serve metrics" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)


def test_lines_a_forced_format_does_not_fit_are_counted_named_once_and_scraped(env: Env, tmp_path: Path) -> None:
    """--format json on a file with other lines: kept whole, counted in the summary and the metrics, named once."""
    log = tmp_path / "mixed.log"
    lines = [
        '{"level":"warn","msg":"fits"}',
        'level=error msg="disk full"',
        "plain words",
        '{"msg":"fits too"}',
        "more",
    ]
    log.write_text("\n".join(lines) + "\n")
    ship = start_logctl(["ship", "--format", "json", "--metrics-address", "127.0.0.1:0", str(log)], env, text=True)
    try:
        url = metrics_url(ship)
        wait_for(lambda: scrape(url).get("logctl_format_unfit_lines_total") == 3)
        with log.open("a") as fh:
            fh.write("one more line that is not JSON\n")
        wait_for(lambda: scrape(url).get("logctl_format_unfit_lines_total") == 4)
    finally:
        ship.send_signal(signal.SIGTERM)
        _out, err = ship.communicate(timeout=60)
    assert ship.returncode == 0, err
    named = [line for line in err.splitlines() if "does not fit format json" in line]
    assert len(named) == 1 and "level=error msg=" in named[0] and "byte 30" in named[0], named
    assert "unfit=4" in err

    summary = run_logctl(
        ["ship", "--no-follow", "--format", "json", "--output", "json", str(log)],
        {**env, "LOGCTL_STATE_DIR": str(tmp_path / "s2")},
    )
    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout)["unfit"] == 4
    records = sink_records(env, tmp_path)
    assert [r["message"] for r in records if r["level"] == "INFO"][:2] == ['level=error msg="disk full"', "plain words"]


def sink_records(env: Env, tmp_path: Path) -> list[dict[str, object]]:
    out = tmp_path / "out.jsonl"
    consumed = run_logctl(["consume", "--exit-when-idle", "1s", "--sink", f"file://{out}"], env)
    assert consumed.returncode == 0, consumed.stderr
    return sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda r: str(r["id"]))
