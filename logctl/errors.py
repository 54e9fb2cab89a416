"""The LogctlError tree: every failure an operator can act on, with its exit code.

The core raises these; only ``cli/app.py`` turns them into a message and an exit code.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in the README."""

    OK = 0
    BUG = 1
    USAGE = 2
    CONFIG = 3
    UNREACHABLE = 4
    NOT_FOUND = 5
    BAD_INPUT = 6
    PARTIAL = 7
    AUTH = 8
    PERMISSION = 9
    LOCKED = 10
    CONFLICT = 11
    INTERRUPTED = 130


class LogctlError(Exception):
    """Base of every error logctl reports to the operator."""

    exit_code: ExitCode = ExitCode.BUG


class ConfigError(LogctlError):
    """A setting, flag or config file is invalid."""

    exit_code = ExitCode.CONFIG


class BrokerUnreachable(LogctlError):
    """The broker could not be reached (refused, timed out, name unknown)."""

    exit_code = ExitCode.UNREACHABLE


class SinkUnreachable(LogctlError):
    """A sink's server (PostgreSQL, Redis) cannot be reached, or dropped the connection."""

    exit_code = ExitCode.UNREACHABLE


class AuthError(LogctlError):
    """The broker refused the login or access to the virtual host."""

    exit_code = ExitCode.AUTH


class NotFound(LogctlError):
    """A queue, exchange, file or other named thing does not exist."""

    exit_code = ExitCode.NOT_FOUND


class BadInput(LogctlError):
    """Input could not be decoded or parsed."""

    exit_code = ExitCode.BAD_INPUT


class PartialFailure(LogctlError):
    """Some of the work was done and some was not."""

    exit_code = ExitCode.PARTIAL


class PermissionDenied(LogctlError):
    """A file, directory or broker resource exists but this user may not use it so."""

    exit_code = ExitCode.PERMISSION


class Locked(LogctlError):
    """Another logctl process holds the lock on a state directory."""

    exit_code = ExitCode.LOCKED


class Conflict(LogctlError):
    """The broker holds a queue or exchange under the name with other arguments (PRECONDITION_FAILED)."""

    exit_code = ExitCode.CONFLICT


class BrokerError(LogctlError):
    """The broker refused an operation (precondition failed, channel closed...)."""

    exit_code = ExitCode.PARTIAL
