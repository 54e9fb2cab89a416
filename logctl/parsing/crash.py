"""Crash reports: what a runtime prints when a program dies, as one record each.

A Go panic, an uncaught Java, Python, Ruby or Node.js exception, a .NET unhandled
exception: printed to stderr, between the program's log lines, with no time and often
with blank lines inside. Each runtime's report has a first line that says what it is
and lines that can follow it; the report is one record, at the level of a crash, that
ends at the first line that cannot be part of it (or that has a time: a log line again).

Sources: the runtimes' own printers (Go ``runtime/panic.go`` and ``traceback.go``,
``Throwable.printStackTrace``, CPython's ``traceback`` module, Ruby's
``Exception#full_message``, Node.js's uncaught-exception handler, .NET's unhandled
exception handler), by their documented output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from logctl.records import Level


class Runtime(StrEnum):
    GO = "go"
    JAVA = "java"
    PYTHON = "python"
    RUBY = "ruby"
    NODE = "node"
    DOTNET = "dotnet"


LEVEL_OF = {
    Runtime.GO: Level.FATAL,  # the process is gone
    Runtime.DOTNET: Level.FATAL,
    Runtime.JAVA: Level.ERROR,
    Runtime.PYTHON: Level.ERROR,
    Runtime.RUBY: Level.ERROR,
    Runtime.NODE: Level.ERROR,
}

# First characters of the lines that start a report: most lines are ruled out by one test.
START_FIRST = frozenset("pfETU/.n")
_RUBY_START = re.compile(r"\S+?:\d+:in [`'].*\((?:[A-Z]\w*::)*[A-Z]\w*\)$")
_NODE_START = re.compile(r"(?:/|\.\.?/|file:///|node:)\S*:\d+$")
_GO_FRAME = re.compile(r"[\w./*()\[\]{}<>-]+\(.*\)$")  # main.handler(0xc000012345), main.main()
_GO_MORE = ("goroutine ", "created by ", "exit status ", "[signal ", "runtime stack:", "panic: ", "fatal error: ")
_PY_CHAIN = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
    "Traceback (most recent call last):",
)
_PY_EXCEPTION = re.compile(r"(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?::.*)?$")  # KeyError: 'x', pkg.Error, StopIteration
_NODE_ERROR = re.compile(r"(?:[A-Z]\w*)?(?:Error|Exception)\b")
_NODE_CARET = re.compile(r"\s*\^+\s*$")


def crash_start(line: str) -> Runtime | None:
    """The runtime whose crash report ``line`` starts, if it starts one."""
    if line[:1] not in START_FIRST:
        return None
    if line.startswith(("panic: ", "fatal error: ")):
        return Runtime.GO
    if line.startswith('Exception in thread "'):
        return Runtime.JAVA
    if line == "Traceback (most recent call last):":
        return Runtime.PYTHON
    if line.startswith(("Unhandled exception. ", "Unhandled Exception: ")):
        return Runtime.DOTNET
    if ":in " in line and line.endswith(")") and _RUBY_START.match(line):
        return Runtime.RUBY
    if line[-1:].isdigit() and " " not in line and _NODE_START.match(line):
        return Runtime.NODE
    return None


@dataclass(slots=True)
class CrashReport:
    """The report being read: which runtime's, and where in it the reader is."""

    runtime: Runtime
    lines: int = 1
    blanks: int = 0  # blank lines seen since the last line of the report: kept if it goes on
    done: bool = False  # a line that ends every report of its runtime was seen (Node's version line)
    after_exception: bool = False  # Python: the exception line was seen; only a chain goes on

    def takes(self, line: str) -> bool:
        """Whether ``line`` (not blank, with no time) is part of the report."""
        if self.done:
            return False
        self.lines += 1
        return _TAKES[self.runtime](self, line)


def _go(report: CrashReport, line: str) -> bool:
    return line[:1] in " \t" or line.startswith(_GO_MORE) or line == "[recovered]" or bool(_GO_FRAME.match(line))


def _java(report: CrashReport, line: str) -> bool:
    return line[:1] in " \t" or line.startswith(("Caused by: ", "Suppressed: "))


def _python(report: CrashReport, line: str) -> bool:
    if line[:1] in " \t":
        return not report.after_exception
    if line in _PY_CHAIN:
        report.after_exception = False
        return True
    if report.after_exception:
        return False
    if _PY_EXCEPTION.match(line):
        report.after_exception = True
        return True
    return False


def _ruby(report: CrashReport, line: str) -> bool:
    return line[:1] in " \t"  # \tfrom path:line:in 'method'


def _node(report: CrashReport, line: str) -> bool:
    if report.lines == 2:
        return True  # the source line the exception came from
    if line.startswith("Node.js v"):
        report.done = True  # the last line of the report
        return True
    return bool(
        line[:1] in " \t{}" or _NODE_CARET.match(line) or _NODE_ERROR.match(line) or line.startswith("Uncaught ")
    )


def _dotnet(report: CrashReport, line: str) -> bool:
    return line[:1] in " \t"  # ' ---> inner', '   at Frame', '   --- End of inner exception stack trace ---'


_TAKES = {
    Runtime.GO: _go,
    Runtime.JAVA: _java,
    Runtime.PYTHON: _python,
    Runtime.RUBY: _ruby,
    Runtime.NODE: _node,
    Runtime.DOTNET: _dotnet,
}
