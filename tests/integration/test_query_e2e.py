"""ship -> broker -> consume -> query, and consume --retain, on the real broker and real sinks."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Env, run_logctl, start_logctl

pytestmark = pytest.mark.integration


def _lines(count: int, start: datetime, level: str = "INFO") -> list[str]:
    return [
        json.dumps(
            {
                "time": (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                "level": level if i % 4 else "ERROR",
                "msg": f"request {i} {'timeout upstream' if i % 10 == 0 else 'served'}",
                "service": "billing" if i % 3 == 0 else "api",
            }
        )
        for i in range(count)
    ]


def test_what_ship_sent_query_finds_by_level_service_time_and_words(env: Env, tmp_path: Path) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    log = tmp_path / "app.log"
    log.write_text("\n".join(_lines(3000, start)) + "\n")
    assert run_logctl(["ship", "--no-follow", str(log)], env).returncode == 0
    consumed = run_logctl(["consume", "--exit-when-idle", "2s"], env)
    assert consumed.returncode == 0, consumed.stderr
    db = env.state_dir / "logs.db"
    assert f"into SQLite {db}" in consumed.stderr  # the start line says where records go

    since = (start + timedelta(seconds=1500)).isoformat()
    found = run_logctl(
        ["query", "--level", "ERROR", "--service", "billing", "--since", since, "timeout", "-o", "json"], env
    )
    assert found.returncode == 0, found.stderr
    got = [json.loads(line) for line in found.stdout.splitlines()]
    want = [i for i in range(1500, 3000) if i % 4 == 0 and i % 3 == 0 and i % 10 == 0]
    assert sorted(int(r["message"].split()[1]) for r in got) == want
    assert [r["timestamp"] for r in got] == sorted((r["timestamp"] for r in got), reverse=True)
    assert all(r["attrs"].get("log.file.path") == str(log) for r in got), got[0]

    counted = run_logctl(["query", "--count-by", "level", "-o", "json"], env)
    assert {o["level"]: o["count"] for o in map(json.loads, counted.stdout.splitlines())} == {
        "ERROR": 750,
        "INFO": 2250,
    }


def test_consume_retain_deletes_old_records_as_it_goes_and_keeps_the_new(env: Env, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    old.write_text("\n".join(_lines(12_000, now - timedelta(days=9))) + "\n")
    new.write_text("\n".join(_lines(2_000, now - timedelta(hours=1))) + "\n")
    assert run_logctl(["ship", "--no-follow", str(old), str(new)], env).returncode == 0
    consumed = run_logctl(["consume", "--exit-when-idle", "3s", "--retain", "7d"], env)
    assert consumed.returncode == 0, consumed.stderr
    assert "keeping 7d" in consumed.stderr
    assert "pruned=12000" in consumed.stderr
    with sqlite3.connect(env.state_dir / "logs.db") as db:
        assert db.execute("SELECT count(*) FROM records").fetchone()[0] == 2000
        assert db.execute("SELECT min(timestamp) FROM records").fetchone()[0] >= (now - timedelta(hours=2)).isoformat()


def test_consume_killed_while_pruning_loses_no_new_record(env: Env, tmp_path: Path) -> None:
    """kill -9 in the middle of retention: what was acked is stored, nothing twice, and pruning resumes."""
    now = datetime.now(UTC).replace(microsecond=0)
    old, new = tmp_path / "old.log", tmp_path / "new.log"
    old.write_text("\n".join(_lines(60_000, now - timedelta(days=30))) + "\n")
    new.write_text("\n".join(_lines(20_000, now - timedelta(minutes=30))) + "\n")
    assert run_logctl(["ship", "--no-follow", str(old)], env).returncode == 0
    assert run_logctl(["consume", "--exit-when-idle", "2s"], env).returncode == 0  # the old records, stored
    assert run_logctl(["ship", "--no-follow", str(new)], env).returncode == 0
    db_path = env.state_dir / "logs.db"
    victim = start_logctl(["consume", "--retain", "1d", "--batch-size", "500"], env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sqlite3.connect(db_path) as db:
            total = db.execute("SELECT count(*) FROM records").fetchone()[0]
        if total < 60_000:  # retention has begun
            break
        time.sleep(0.05)
    victim.kill()
    victim.wait()
    finished = run_logctl(["consume", "--exit-when-idle", "2s", "--retain", "1d"], env)
    assert finished.returncode == 0, finished.stderr
    with sqlite3.connect(db_path) as db:
        messages = [m for (m,) in db.execute("SELECT message FROM records")]
        db.execute("INSERT INTO records_fts (records_fts) VALUES ('integrity-check')")
    assert len(messages) == 20_000 == len(set(messages))
    found = run_logctl(["query", "timeout", "upstream", "-o", "json"], env)
    assert len(found.stdout.splitlines()) == 2000
