"""Every supported format, multi-line joining, level synonyms and trace ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from logctl.codec import decode, encode
from logctl.parsing import parse_text
from logctl.parsing.fields import level_from_word
from logctl.parsing.lines import MAX_RECORD_BYTES
from logctl.parsing.text import micros_without_year_at
from logctl.records import EPOCH, Level


def one(line: str, service: str = "svc"):
    records = parse_text(line, "p", service)
    assert len(records) == 1, records
    return records[0]


# One line of each supported format: (line, level, service, message, trace_id).
FORMAT_EXAMPLES = [
    # Go slog
    ('{"time":"2026-11-27T11:32:10.123Z","level":"INFO","msg":"hello","user":"bob"}', "INFO", "svc", "hello", None),
    # zap
    ('{"level":"dpanic","ts":1764243130.5,"caller":"m.go:1","msg":"z","service":"api"}', "FATAL", "api", "z", None),
    # pino / bunyan numeric level, name is the app
    (
        '{"level":50,"time":1764243130123,"pid":1,"hostname":"h","name":"shop","msg":"p","v":1}',
        "ERROR",
        "shop",
        "p",
        None,
    ),
    # Elastic ECS
    (
        '{"@timestamp":"2026-11-27T11:32:10Z","log":{"level":"warning"},"message":"e",'
        '"service":{"name":"cart"},"trace":{"id":"abc123"}}',
        "WARN",
        "cart",
        "e",
        "abc123",
    ),
    # logrus
    (
        '{"level":"warning","msg":"lr","time":"2026-11-27T11:32:10+01:00","traceId":"t-1"}',
        "WARN",
        "svc",
        "lr",
        "t-1",
    ),
    # Google Cloud
    (
        '{"severity":"CRITICAL","message":"g","logging.googleapis.com/trace":"projects/p/traces/0af7651916cd43dd"}',
        "FATAL",
        "svc",
        "g",
        "0af7651916cd43dd",
    ),
    # W3C traceparent in logfmt
    (
        'ts=2026-11-27T11:32:10Z level=eror msg="lf x" traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
        "ERROR",
        "svc",
        "lf x",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    ),
    # syslog RFC 5424: level from PRI severity (165 = local4.notice), service from app name
    ("<165>1 2026-11-27T11:32:10.123Z host1 myapp 123 ID47 - started", "INFO", "myapp", "started", None),
    # syslog RFC 3164 (11 = user.err)
    ("<11>Nov 27 11:32:10 host2 sshd[42]: denied", "ERROR", "sshd", "denied", None),
    # syslog file without PRI
    ("Nov 27 11:32:10 host2 cron[7]: tick", "INFO", "cron", "tick", None),
    # nginx error log
    ("2026/11/27 11:32:10 [crit] 12#0: *1 upstream gone", "FATAL", "svc", "*1 upstream gone", None),
    # Apache error log
    (
        "[Fri Nov 27 11:32:10.123456 2026] [core:error] [pid 123] [client 1.2.3.4:5] denied",
        "ERROR",
        "svc",
        "denied",
        None,
    ),
    # PostgreSQL
    ("2026-11-27 11:32:10.123 UTC [4242] ERROR:  relation missing", "ERROR", "svc", "relation missing", None),
    # Redis
    ("4242:M 27 Nov 2026 11:32:10.123 # low memory", "WARN", "svc", "low memory", None),
    # klog
    ("W1127 11:32:10.123456    1234 main.go:42] careful", "WARN", "svc", "careful", None),
    # Rails / Ruby Logger
    ("E, [2026-11-27T11:32:10.123456 #1234] ERROR -- web: boom", "ERROR", "web", "boom", None),
    # logback
    ("2026-11-27 11:32:10.123 [main] INFO  com.example.App - up", "INFO", "svc", "up", None),
    # Spring Boot
    ("2026-11-27T11:32:10.123Z  WARN 1234 --- [main] c.e.Spring : spring", "WARN", "svc", "spring", None),
    # Python logging, common format, trace id written in the text
    (
        "2026-11-27 11:32:10,123 - app.db - CRITICAL - down trace_id=deadbeef01",
        "FATAL",
        "svc",
        "down trace_id=deadbeef01",
        "deadbeef01",
    ),
    # Python basicConfig
    ("WARNING:root:basic", "WARN", "svc", "basic", None),
    # timestamp and message, no level word
    ("2026-11-27 11:32:10,123 just a message", "INFO", "svc", "just a message", None),
    # rsyslog's high-precision file format
    # sshd's error() writes "error: ": the message says its level
    ("2026-11-27T11:32:10.123+00:00 host1 sshd[7]: error: refused", "ERROR", "sshd", "error: refused", None),
]


@pytest.mark.parametrize(("line", "level", "service", "message", "trace_id"), FORMAT_EXAMPLES)
def test_format_is_detected_and_mapped(line: str, level: str, service: str, message: str, trace_id: str | None) -> None:
    record = one(line)
    assert (record.level.value, record.service, record.message, record.trace_id) == (level, service, message, trace_id)


@pytest.mark.parametrize("before", [example[0] for example in FORMAT_EXAMPLES])
def test_a_line_parses_the_same_whatever_line_came_before_it(before: str) -> None:
    """Which format a line is taken for depends on the line alone: a Python logging line
    after one with no level word keeps its level, and workers that start parsing
    mid-file find the records a single process does."""
    alone = [parse_text(line, "p", "svc")[0] for line, *_ in FORMAT_EXAMPLES]
    after = [parse_text(f"{before}\n{line}", "p", "svc")[-1] for line, *_ in FORMAT_EXAMPLES]
    shape = ["level", "service", "message", "trace_id", "attrs"]
    assert [[getattr(r, k) for k in shape] for r in after] == [[getattr(r, k) for k in shape] for r in alone]


@pytest.mark.parametrize(("status", "level"), [(200, "INFO"), (404, "WARN"), (503, "ERROR")])
def test_access_log_level_follows_http_status(status: int, level: str) -> None:
    record = one(f'10.0.0.1 - bob [27/Nov/2026:11:32:10 +0100] "GET /x HTTP/1.1" {status} 12 "-" "curl/8"')
    assert record.level.value == level
    assert record.attrs["status"] == status
    assert record.attrs["user"] == "bob"
    assert record.timestamp.isoformat() == "2026-11-27T10:32:10+00:00"


def test_docker_json_file_wrapper_parses_the_inner_line() -> None:
    record = one(
        '{"log":"{\\"level\\":\\"error\\",\\"msg\\":\\"inner\\"}\\n","stream":"stderr","time":"2026-11-27T11:32:10Z"}'
    )
    assert (record.level, record.message, record.attrs["stream"]) == (Level.ERROR, "inner", "stderr")


def test_timestamps_are_utc() -> None:
    record = one('{"time":"2026-11-27T12:32:10.250+01:00","msg":"x"}')
    assert record.timestamp.isoformat() == "2026-11-27T11:32:10.250000+00:00"


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
)
def test_a_time_at_the_ends_of_the_calendar_is_kept_as_a_field_and_the_batch_decodes(stamp: str) -> None:
    """Such a time used to stop ship (OverflowError), or pass and make consume reject the
    whole batch it travelled in. Now it is no time: the line gets the time it was read."""
    json_line = one(f'{{"time":"{stamp}","level":"warn","msg":"x"}}')
    text_line = one(f"<11>1 {stamp} host app - - - x")
    assert json_line.attrs["time"] == stamp
    assert (json_line.level, json_line.message) == (Level.WARN, "x")
    assert text_line.level == Level.ERROR
    for record in (json_line, text_line):
        assert 2026 <= record.timestamp.year < 9999
        body, content_type = encode([record])
        assert decode(body, content_type) == [record]


@pytest.mark.parametrize(
    ("word", "level"),
    [
        ("warning", Level.WARN),
        ("err", Level.ERROR),
        ("eror", Level.ERROR),
        ("crit", Level.FATAL),
        ("dpanic", Level.FATAL),
        ("notice", Level.INFO),
        ("EMERG", Level.FATAL),
        ("trace", Level.TRACE),
        ("dbug", Level.DEBUG),
    ],
)
def test_level_synonyms_normalise(word: str, level: Level) -> None:
    assert level_from_word(word) is level


def test_python_traceback_joins_the_record_above() -> None:
    text = (
        "2026-11-27 11:32:10,123 ERROR failed\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "ValueError: bad\n"
        "2026-11-27 11:32:11,000 INFO next\n"
    )
    records = parse_text(text, "p", "s")
    assert [r.level for r in records] == [Level.ERROR, Level.INFO]
    assert records[0].message.endswith("ValueError: bad")
    assert records[0].message.count("\n") == 3


def test_java_stack_trace_indented_lines_join() -> None:
    text = (
        "Exception in thread main java.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\nnext"
    )
    records = parse_text(text, "p", "s")
    assert len(records) == 2
    assert records[0].message.count("\tat ") == 2


def test_a_record_stops_joining_lines_at_its_byte_bound_and_drops_none() -> None:
    """A header and ten continuation lines of 1 MiB would make a 10 MiB record (1,000 of
    them a gigabyte, over RabbitMQ's message size limit); it is cut into records of at
    most MAX_RECORD_BYTES plus one line, and every line is kept."""
    body = [f"\tat frame {i} " + "x" * (1 << 20) for i in range(10)]
    records = parse_text("\n".join(["2026-11-27 11:32:10,123 ERROR failed", *body]), "p", "s")
    assert len(records) > 3
    assert max(len(r.message) for r in records) <= MAX_RECORD_BYTES + (1 << 20) + 100
    assert records[0].level == Level.ERROR and records[0].message.startswith("failed\n\tat frame 0 ")
    assert "\n".join(r.message for r in records).split("\n")[1:] == body


def test_unrecognised_lines_become_info_records_each() -> None:
    records = parse_text("just text\nmore text\n", "p", "s")
    assert [(r.level, r.message) for r in records] == [(Level.INFO, "just text"), (Level.INFO, "more text")]


def test_ids_are_prefix_and_byte_offset() -> None:
    records = parse_text("a\nbé\nc\n", "p", "s")
    assert [r.id for r in records] == ["p-000000000000", "p-000000000002", "p-000000000006"]


def test_malformed_json_is_kept_as_text() -> None:
    record = one('{"level": "info", "msg": ')
    assert record.message == '{"level": "info", "msg": '


@pytest.mark.parametrize(
    ("stamp", "now", "year"),
    [
        (("Nov", "27", "11:32:10"), datetime(2026, 11, 27, tzinfo=UTC), 2026),
        (("Dec", "31", "23:59:59"), datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC), 2026),  # last year's
        (("Feb", "29", "10:00:00"), datetime(2028, 3, 1, tzinfo=UTC), 2028),
        (("Feb", "29", "10:00:00"), datetime(2028, 1, 15, tzinfo=UTC), None),  # 2027 had none: no time
    ],
)
def test_syslog_3164_stamps_get_this_year_or_last(stamp: tuple[str, str, str], now: datetime, year: int | None) -> None:
    micros = micros_without_year_at(*stamp, now)
    assert (None if micros is None else (EPOCH + timedelta(microseconds=micros)).year) == year


# --- the fault classes of the issue "Understand what real systems write" ------------------


@pytest.mark.parametrize(
    "line",
    [
        '{"level":30,"time":1700000000000,"pid":1,"hostname":"h","name":"api","msg":"x"}',  # pino
        '{"level":30,"time":1700000000000,"name":"api","msg":"x"}',  # pino with base: null
        '{"name":"api","hostname":"h","pid":1,"level":30,"msg":"x","time":"2012-02-08T22:56:52.856Z","v":0}',
    ],
)
def test_pino_and_bunyan_name_is_the_service_when_none_is_given(line: str) -> None:
    assert one(line).service == "api"
    assert one(line.replace('"name":"api"', '"name":"api","service":"billing"')).service == "billing"


@pytest.mark.parametrize(
    ("word", "level"),
    [("WARN+2", Level.WARN), ("DEBUG-4", Level.DEBUG), ("ERROR+1", Level.ERROR), ("INFO+3", Level.INFO)],
)
def test_slog_offset_levels_are_the_level_they_are_offset_from(word: str, level: Level) -> None:
    assert one(f'{{"level":"{word}","msg":"x"}}').level is level
    assert one(f"time=2026-11-27T11:32:10Z level={word} msg=x").level is level


@pytest.mark.parametrize("key", ["trace_id", "traceId", "TraceId", "traceID", "trace-id", "TRACE_ID", "Trace.Id"])
def test_trace_id_keys_match_whatever_their_case_and_separator(key: str) -> None:
    assert one(f'{{"msg":"x","{key}":"4bf92f3577b34da6"}}').trace_id == "4bf92f3577b34da6"
    assert one(f'{{"msg":"x","span":{{"{key}":"4bf92f3577b34da6"}}}}').trace_id == "4bf92f3577b34da6"
    assert one(f"level=info msg=x {key}=4bf92f3577b34da6").trace_id == "4bf92f3577b34da6"


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("Fatal error: Allowed memory size exhausted", Level.FATAL),
        ("Warning: disk almost full", Level.WARN),
        ("ERROR: relation does not exist", Level.ERROR),
        ("[warn] upstream slow", Level.WARN),
        ("[Error] boom", Level.ERROR),
        ("error: cannot open file", Level.ERROR),
    ],
)
def test_a_level_word_with_a_colon_or_brackets_starts_a_record_of_its_own(line: str, level: Level) -> None:
    records = parse_text(f"2026-11-27 11:32:10,123 INFO started\n{line}\n", "p", "svc")
    assert [r.level for r in records] == [Level.INFO, level]


def test_words_in_a_sentence_still_continue_the_record_above() -> None:
    records = parse_text("2026-11-27 11:32:10,123 ERROR failed\nCaused by: java.io.IOException: gone\n", "p", "s")
    assert len(records) == 1


@pytest.mark.parametrize(
    ("value", "level"),
    [('"PRIORITY":"3"', Level.ERROR), ('"level":4', Level.WARN), ('"level":50', Level.ERROR),
     ('"severityNumber":17', Level.ERROR), ('"severity_number":9', Level.INFO)],
)  # fmt: skip
def test_numeric_levels_are_read_by_their_scheme(value: str, level: Level) -> None:
    assert one(f'{{"msg":"x",{value}}}').level is level


def test_a_blank_line_is_no_record_and_blank_lines_inside_one_stay_out_of_its_message() -> None:
    records = parse_text("\n  \nhello\n\n \nworld\n\n", "0123456789abcdef", "svc")
    assert [r.message for r in records] == ["hello", "world"]
    assert [int(r.id.rsplit("-", 1)[1], 16) for r in records] == [4, 13]


# This machine's own logs, in the layouts their programs write (issue 24): none is a known format.
MACHINE_LOGS = [
    # NATS server: [pid] date time.micros [LVL] message
    ("[2967] 2026/12/03 07:27:04.280294 [ERR] Error listening on port: 4222", "ERROR", "2026-12-03T07:27:04.280", None),
    ("[2967] 2026/12/03 07:27:04.280357 [WRN]   Version:  2.9.10", "WARN", "2026-12-03T07:27:04.280", None),
    ("[2967] 2026/12/03 07:27:04.280359 [INF] Starting nats-server", "INFO", "2026-12-03T07:27:04.280", None),
    # Mosquitto: epoch seconds, a colon
    ("1796282824: mosquitto version 2.0.11 starting", "INFO", "2026-12-03T07:27:04.000", None),
    # update-alternatives (alternatives.log): the program, then its time
    (
        "update-alternatives 2025-06-24 14:36:53: link group pager updated",
        "INFO",
        "2025-06-24T14:36:53.000",
        "update-alternatives",
    ),
    # apt's history.log: a label before the time
    ("Start-Date: 2025-06-24  14:36:25", "INFO", "2025-06-24T14:36:25.000", None),
    # dots between the date's parts, a zone name, a level with a colon
    ("2026.11.27 11:32:10 UTC error: the disk is full", "ERROR", "2026-11-27T11:32:10.000", None),
]


@pytest.mark.parametrize("line,level,stamp,service", MACHINE_LOGS)
def test_the_generic_header_reader_finds_time_and_level_where_no_format_knows_the_line(
    line: str, level: str, stamp: str, service: str | None
) -> None:
    (record,) = parse_text(line + "\n", "0123456789abcdef", "file")
    assert record.level.value == level
    assert record.timestamp.isoformat(timespec="milliseconds").startswith(stamp)
    assert record.service == (service or "file")
    assert "logctl.read_time" not in record.attrs


def test_the_header_reader_takes_no_line_without_a_time_so_traces_stay_whole() -> None:
    text = (
        "[2967] 2026/12/03 07:27:04.280294 [ERR] request failed\n"
        "Caused by: java.lang.Error: boom\n"
        "\tat com.example.Main.main(Main.java:5)\n"
        "[2967] 2026/12/03 07:27:05.000000 [INF] next\n"
    )
    first, second = parse_text(text, "0123456789abcdef", "file")
    assert first.message == "request failed\nCaused by: java.lang.Error: boom\n\tat com.example.Main.main(Main.java:5)"
    assert (first.level.value, second.message) == ("ERROR", "next")


# The header reader's shapes and level spellings, on lines of no known format (issue 24, item 1).
HEADER_SHAPES = [
    # stamps
    ("Thu Dec  3 10:00:00 2026 link up", "INFO", "2026-12-03T10:00:00.000"),
    ("Thu Dec  3 10:00:00 UTC 2026 link up", "INFO", "2026-12-03T10:00:00.000"),
    ("Thu, 03 Dec 2026 10:00:00 +0200 link up", "INFO", "2026-12-03T08:00:00.000"),
    ("03-Dec-2026 10:00:00.123 resolver: error: timed out", "ERROR", "2026-12-03T10:00:00.123"),
    ("E [03/Dec/2026:10:00:00 +0000] printer on fire", "ERROR", "2026-12-03T10:00:00.000"),
    ("[1796292000123] cache: warning: nearly full", "WARN", "2026-12-03T10:00:00.123"),
    ("1796292000123456789 job done", "INFO", "2026-12-03T10:00:00.123"),
    # levels
    ("2026-12-03T10:00:00Z W! [outputs.x] buffer full", "WARN", "2026-12-03T10:00:00.000"),
    ("2026-12-03 10:00:00.000 [ 42 ] {a1b2} <Warning> Pool: slow", "WARN", "2026-12-03T10:00:00.000"),
    ("[2026-12-03 10:00:00,000: ERROR/Worker-1] task failed", "ERROR", "2026-12-03T10:00:00.000"),
    ("[2026-12-03 10:00:00] [worker thread/WARN]: lagging", "WARN", "2026-12-03T10:00:00.000"),
    ("2026-12-03 10:00:00 app.db.pool [1234]: CRITICAL pool gone", "FATAL", "2026-12-03T10:00:00.000"),
    ("2026-12-03 10:00:00 [main] {Runner.java:12} DEBUG starting", "DEBUG", "2026-12-03T10:00:00.000"),
    ("2026-12-03 10:00:00 pid=12 tid=x7 WARN: slow", "WARN", "2026-12-03T10:00:00.000"),
    ("2026-12-03 10:00:00 kid1| ERROR: no ports", "ERROR", "2026-12-03T10:00:00.000"),
    ("2026-12-03 10:00:00 [E] disk gone", "ERROR", "2026-12-03T10:00:00.000"),
    ("2026-12-03 10:00:00 [FATAL] out of memory", "FATAL", "2026-12-03T10:00:00.000"),
    ("2026-12-03 10:00:00 level=warn retrying", "WARN", "2026-12-03T10:00:00.000"),
    ("2026-12-03 10:00:00 daemon[77]: err: no config", "ERROR", "2026-12-03T10:00:00.000"),
]


@pytest.mark.parametrize("line,level,stamp", HEADER_SHAPES)
def test_the_header_reader_finds_the_time_in_its_shapes_and_the_level_among_the_header_tokens(
    line: str, level: str, stamp: str
) -> None:
    (record,) = parse_text(line + "\n", "0123456789abcdef", "file")
    assert record.level.value == level
    assert record.timestamp.isoformat(timespec="milliseconds").startswith(stamp)
    assert "logctl.read_time" not in record.attrs


@pytest.mark.parametrize(
    "line",
    [
        "user alice logged in at 2026-12-03 10:00:00 from 10.0.0.7",  # a time inside a message
        "the job ran on Thu Dec  3 10:00:00 2026 and failed",
        "A 10:00:00 meeting",  # a letter that is not a level before a clock
    ],
)
def test_a_time_after_a_message_has_begun_makes_no_header(line: str) -> None:
    (record,) = parse_text(line + "\n", "0123456789abcdef", "file")
    assert record.message == line
    assert "logctl.read_time" in record.attrs


@pytest.mark.parametrize(
    "line,message",
    [
        ("2026-12-03 10:00:00 request failed with error 502", "request failed with error 502"),
        ("2026-12-03 10:00:00 A request for /health", "A request for /health"),
        ("2026-12-03 10:00:00 I think so", "I think so"),
    ],
)
def test_a_level_word_inside_the_message_is_not_the_records_level(line: str, message: str) -> None:
    (record,) = parse_text(line + "\n", "0123456789abcdef", "file")
    assert (record.level.value, record.message) == ("INFO", message)


def test_a_time_of_day_alone_counts_only_at_the_start_of_a_line_and_takes_the_day_it_is_read() -> None:
    (record,) = parse_text("[10:00:00] [main/WARN]: slow tick\n", "0123456789abcdef", "file")
    assert record.level.value == "WARN" and record.message == "slow tick"
    assert record.timestamp.date() == datetime.now(UTC).date() and record.timestamp.hour == 10


def test_a_stamp_that_ends_past_the_readers_reach_is_read_whole() -> None:
    program = "a-program-with-a-very-long-name-of-forty-nine-ch"
    (record,) = parse_text(f"{program} 2026-12-03 10:00:00.123456+02:00 [W] late\n", "0123456789abcdef", "file")
    assert record.timestamp.isoformat() == "2026-12-03T08:00:00.123456+00:00"
    assert (record.level.value, record.service) == ("WARN", program)
