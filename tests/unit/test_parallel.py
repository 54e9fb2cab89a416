"""Parsing a backlog in worker processes gives exactly the records of parsing it in one."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgpack
import pytest

from logctl.config import Settings
from logctl.parallel import MIN_BACKLOG_BYTES, BlockJob, BlockPool, parse_block
from logctl.records import LogRecord, record_of, record_to_dict
from logctl.shipper import ShipOptions, ship
from logctl.sources import RecordShape


def _messy_lines(rng: random.Random, count: int) -> list[bytes]:
    """Lines of several formats with multi-line records, junk and edge cases at random places."""
    out: list[bytes] = []
    for i in range(count):
        kind = rng.random()
        if kind < 0.05:  # a stack trace: a headed record and its continuation lines
            out.append(f"2024-03-01 10:00:00,123 ERROR [worker] job {i} failed".encode())
            out.append(b"Traceback (most recent call last):")
            out.extend(f'  File "app.py", line {n}, in run'.encode() for n in range(rng.randint(1, 30)))
            out.append(b"ValueError: bad")
        elif kind < 0.06:  # a crash report between log lines: no time, blank lines inside
            out.extend(rng.choice(CRASH_REPORTS))
        elif kind < 0.07:
            out.append(b"  indented, continues whatever came before")
        elif kind < 0.08:
            out.append(b"bad \xff\xfe utf-8 and a NUL \x00 " + str(i).encode())
        elif kind < 0.09:
            out.append(b"x" * rng.randint(2000, 5000))  # over --max-line-bytes below
        elif kind < 0.10:
            out.append(b"")
        elif kind < 0.11:
            out.append(f'time=2024-03-01T10:00:00Z level=warn msg="crlf {i}"\r'.encode())
        elif kind < 0.55:
            out.append(
                f'{{"time":"2024-03-01T10:00:00.5Z","level":"info","msg":"json {i}","trace_id":"{i:032x}"}}'.encode()
            )
        else:
            out.append(f"<13>Mar  1 10:00:00 host app[7]: syslog {i} {'y' * rng.randint(0, 200)}".encode())
    return out


CRASH_REPORTS = [
    [b"panic: boom", b"", b"goroutine 1 [running]:", b"main.main()", b"\t/app/main.go:9 +0x1d", b"exit status 2"],
    [b"Traceback (most recent call last):", b'  File "w.py", line 1, in <module>', b"KeyError: 'k'"],
    [b'Exception in thread "main" java.lang.Error: x', b"\tat A.b(A.java:1)", b"Caused by: java.io.IOException"],
    [b"/app/server.js:12", b"    throw err;", b"    ^", b"", b"Error: down", b"    at f (/app/server.js:12:11)"],
    [b"Error: down", b"    at f (/app/server.js:12:11)", b"", b"Node.js v20.10.0"],
]


def _shipped(path: Path, workers: int, serializer: str, max_line_bytes: int = 1024) -> list[LogRecord]:
    got: list[LogRecord] = []
    options = ShipOptions(
        paths=(str(path),),
        follow=False,
        workers=workers,
        max_line_bytes=max_line_bytes,
        batch_size=333,
        serializer=serializer,
    )
    ship(
        Settings(), options, lambda: False, lambda _msg: None, on_dry_run=lambda rows: got.extend(map(record_of, rows))
    )
    return got


def _comparable(record: LogRecord) -> dict[str, object]:
    shown = record_to_dict(record)
    if shown["timestamp"] >= "2026":  # a line without a time gets the time it was read
        shown["timestamp"] = None
    return shown


@pytest.mark.parametrize(("seed", "serializer"), [(1, "msgpack"), (2, "json")])
def test_workers_give_the_records_of_a_single_process(tmp_path: Path, seed: int, serializer: str) -> None:
    rng = random.Random(seed)
    path = tmp_path / "messy.log"
    lines = _messy_lines(rng, 60_000)
    path.write_bytes(b"\n".join(lines))  # the last line has no newline: finished at the end
    assert path.stat().st_size > 2 * MIN_BACKLOG_BYTES

    alone = _shipped(path, 0, serializer)
    pooled = _shipped(path, 2, serializer)

    assert len(pooled) == len(alone)
    by_id = {r.id: _comparable(r) for r in alone}
    assert len(by_id) == len(alone)
    assert {r.id: _comparable(r) for r in pooled} == by_id


def test_workers_cut_oversized_records_where_a_single_process_does(tmp_path: Path) -> None:
    """Stack traces of 6-9 MiB, over MAX_RECORD_BYTES and across many blocks, between short lines."""
    rng = random.Random(3)
    lines: list[bytes] = []
    for i in range(6):
        lines.append(f'{{"time":"2024-03-01T10:00:00.5Z","level":"info","msg":"before {i}"}}'.encode())
        lines.append(f"2024-03-01 10:00:00,123 ERROR job {i} failed".encode())
        lines.extend(f"\tat frame {n} ".encode() + b"z" * rng.randint(100_000, 300_000) for n in range(40))
    path = tmp_path / "traces.log"
    path.write_bytes(b"\n".join(lines) + b"\n")

    alone = _shipped(path, 0, "msgpack", max_line_bytes=1 << 20)
    pooled = _shipped(path, 2, "msgpack", max_line_bytes=1 << 20)

    assert len(alone) >= 2 * 6 + 6  # each trace was cut at least once
    assert len(pooled) == len(alone)
    assert {r.id: _comparable(r) for r in pooled} == {r.id: _comparable(r) for r in alone}


def test_a_block_leaves_its_lead_and_last_record_to_the_source_parser() -> None:
    data = (
        b"  continues the record before the block\n"
        b"plain words\n"  # unrecognised: may continue a headed record before the block
        b'{"level":"info","msg":"first"}\n'
        b'{"level":"warn","msg":"second"}\n'
        b"2024-03-01 10:00:00,123 ERROR [w] last\n"
        b"  at frame\n"
    )
    job = BlockJob(data, 1000, "p", RecordShape("svc"), "msgpack")
    result = parse_block(job)
    assert result.lead_end == 1000 + data.index(b'{"level":"info"')
    assert result.rest_start == 1000 + data.index(b"2024-03-01")
    assert result.lines == 2
    assert sorted(result.rows) == ["svc.info", "svc.warn"]
    assert [len(ends) for _buf, ends in result.rows.values()] == [1, 1]


def test_a_block_keeps_source_order_within_each_routing_key() -> None:
    """Services that make the same routing key ("API" and "api") share its rows, in order."""
    lines = [
        f'{{"level":"{level}","service":"{service}","msg":"{i}"}}'
        for i, (service, level) in enumerate(
            [("API", "info"), ("db", "info"), ("api", "info"), ("API", "error"), ("api", "info"), ("API", "info")] * 50
        )
    ]
    data = ("\n".join(lines) + "\n").encode()
    result = parse_block(BlockJob(data, 0, "p", RecordShape("svc"), "msgpack"))

    messages: dict[str, list[int]] = {}
    for key, (buf, ends) in result.rows.items():
        rows = msgpack.unpackb(msgpack.Packer().pack_array_header(len(ends)) + buf)
        messages[key] = [int(row[4]) for row in rows]
    expected: dict[str, list[int]] = {}
    for i, line in enumerate(lines[:-1]):  # the last record is left to the source's parser
        record = json.loads(line)
        expected.setdefault(f"{record['service'].lower()}.{record['level']}", []).append(i)
    assert messages == expected


@pytest.mark.parametrize("workers", [0, 2])
def test_a_number_beyond_64_bits_travels_as_text(tmp_path: Path, workers: int) -> None:
    """msgspec's encoder refuses such an integer (an access log's byte count can be any
    run of digits); the rows it was in go through msgpack's, which writes it as text."""
    huge = "9" * 30
    line = f'10.0.0.1 - - [27/Nov/2026:11:32:10 +0000] "GET / HTTP/1.1" 200 {huge} "-" "curl/8"\n'
    plain = '{"level":"info","msg":"plain"}\n'
    path = tmp_path / "huge.log"
    path.write_text((plain * 999 + line) * (2 * MIN_BACKLOG_BYTES // (32 * 999 + len(line)) + 1))

    got = _shipped(path, workers, "msgpack")

    assert {r.attrs.get("bytes") for r in got} == {None, huge}
    assert len(got) == path.read_text().count("\n")


def test_blocks_and_rows_too_big_for_the_shared_buffers_take_the_pipe(tmp_path: Path) -> None:
    """A block travels in a 4 MiB shared buffer and its rows come back in it when they fit.
    Here one block holds a 5 MiB line, and short lines make rows 20 times their size:
    both go through the pipe instead, with the records of a single process."""
    lines = [b"x"] * 600_000  # 1.2 MB of lines, 25 MB of rows
    lines.append(b'{"level":"warn","msg":"long","pad":"' + b"p" * (5 << 20) + b'"}')
    lines.extend(f'{{"level":"info","msg":"after {i}"}}'.encode() for i in range(50_000))
    path = tmp_path / "big-and-small.log"
    path.write_bytes(b"\n".join(lines) + b"\n")

    alone = _shipped(path, 0, "msgpack", max_line_bytes=8 << 20)
    pooled = _shipped(path, 2, "msgpack", max_line_bytes=8 << 20)

    assert len(alone) == len(lines)
    assert {r.id: _comparable(r) for r in pooled} == {r.id: _comparable(r) for r in alone}


def test_a_pool_abandoned_mid_round_parses_the_next_round_right() -> None:
    """Closing parse() early (ship stopping) leaves jobs running in workers that still
    write in their shared buffers: those must not be handed to the next round's jobs."""
    line = '{{"time":"2026-11-27T11:32:10Z","level":"info","msg":"{}"}}\n'
    block = "".join(line.format(i) for i in range(40_000)).encode()
    jobs = [BlockJob(block, n * len(block), "p", RecordShape("svc"), "msgpack") for n in range(8)]
    expected = [parse_block(job) for job in jobs]
    pool = BlockPool(2)
    try:
        first = pool.parse(iter(jobs), lambda: None)
        next(first)
        first.close()  # three jobs still in flight
        assert [result for _job, result in pool.parse(iter(jobs), lambda: None)] == expected
    finally:
        pool.close()
