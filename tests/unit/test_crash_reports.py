"""Crash reports of the runtimes people run, each one record at the level of a crash (issue 24, item 3)."""

from __future__ import annotations

import pytest

from logctl.parsing import parse_text
from logctl.records import Level

BEFORE = "2026-12-03 10:00:00,123 INFO service started\n"
AFTER = "2026-12-03 10:00:09,000 INFO service started\n"

REPORTS = {
    "go panic": (
        Level.FATAL,
        "panic: runtime error: invalid memory address or nil pointer dereference\n"
        "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x47f2a4]\n"
        "\n"
        "goroutine 1 [running]:\n"
        "main.(*Server).handle(0x0)\n"
        "\t/app/server.go:31 +0x24\n"
        "created by main.main in goroutine 1\n"
        "\t/app/main.go:12 +0x65\n"
        "exit status 2\n",
    ),
    "go fatal error": (
        Level.FATAL,
        "fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan receive]:\nmain.main()\n"
        "\t/app/main.go:5 +0x2d\n",
    ),
    "java": (
        Level.ERROR,
        'Exception in thread "worker-1" java.lang.NullPointerException: name\n'
        "\tat com.example.Job.run(Job.java:22)\n"
        "Caused by: java.lang.IllegalStateException\n"
        "\t... 3 more\n"
        "\tSuppressed: java.io.IOException: close\n",
    ),
    "python, chained": (
        Level.ERROR,
        "Traceback (most recent call last):\n"
        '  File "/app/x.py", line 2, in <module>\n'
        "    1 / 0\n"
        "ZeroDivisionError: division by zero\n"
        "\n"
        "The above exception was the direct cause of the following exception:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "/app/x.py", line 4, in <module>\n'
        "app.errors.ConfigError: bad config\n",
    ),
    "ruby": (
        Level.ERROR,
        "/app/x.rb:3:in 'Integer#/': divided by 0 (ZeroDivisionError)\n"
        "\tfrom /app/x.rb:3:in 'Object#divide'\n"
        "\tfrom /app/x.rb:7:in '<main>'\n",
    ),
    "node": (
        Level.ERROR,
        "node:internal/process/promises:289\n"
        "            triggerUncaughtException(err, true /* fromPromise */);\n"
        "            ^\n"
        "\n"
        'TypeError [ERR_INVALID_ARG_TYPE]: The "path" argument must be of type string. Received undefined\n'
        "    at Object.readFileSync (node:fs:448:20) {\n"
        "  code: 'ERR_INVALID_ARG_TYPE'\n"
        "}\n"
        "\n"
        "Node.js v20.10.0\n",
    ),
    ".NET": (
        Level.FATAL,
        "Unhandled exception. System.IO.FileNotFoundException: Could not find file '/app/appsettings.json'.\n"
        "   at System.IO.FileStream.ValidateFileHandle(SafeFileHandle fileHandle)\n"
        "   at Program.<Main>$(String[] args) in /src/Program.cs:line 3\n",
    ),
}


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_a_crash_report_between_log_lines_is_one_record_blank_lines_and_all(name: str) -> None:
    level, report = REPORTS[name]
    records = parse_text(BEFORE + report + AFTER, "p", "svc")
    assert [r.message for r in records] == ["service started", report.rstrip("\n"), "service started"]
    assert records[1].level is level
    assert records[1].attrs.get("logctl.read_time") is True  # no time in the report: said so


def test_a_traceback_under_a_logged_error_stays_with_it() -> None:
    text = "2026-12-03 10:00:00,123 ERROR job failed\nTraceback (most recent call last):\n  File \"x\"\nKeyError: 'k'\n"
    (record,) = parse_text(text, "p", "svc")
    assert record.level is Level.ERROR and record.message.startswith("job failed\nTraceback")


def test_a_report_ends_at_the_first_line_it_cannot_hold() -> None:
    text = "Traceback (most recent call last):\n  File \"x\"\nKeyError: 'k'\nworker restarting\n"
    records = parse_text(text, "p", "svc")
    assert [r.message for r in records] == [
        "Traceback (most recent call last):\n  File \"x\"\nKeyError: 'k'",
        "worker restarting",
    ]
    assert records[1].level is Level.INFO
