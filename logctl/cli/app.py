"""The CLI edge: the Typer app, shared options, settings, and turning errors into exit codes.

This is the one place that catches LogctlError: one line on stderr, the error's exit
code, and the traceback only with ``--debug``.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from typer.core import TyperGroup

from logctl import __version__
from logctl.config import Settings, contexts_of, default_config_path, from_environment, load_file
from logctl.errors import ExitCode, LogctlError
from logctl.render import OutputMode, stderr_console

# Commands in the order users meet them, not the order their modules happen to load.
COMMAND_ORDER = (
    "ship",
    "tail",
    "consume",
    "query",
    "prune",
    "replay",
    "queue",
    "top",
    "policy",
    "bench",
    "status",
    "config",
)


class _InOrder(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: COMMAND_ORDER.index(n) if n in COMMAND_ORDER else len(COMMAND_ORDER))


app = typer.Typer(
    name="logctl",
    cls=_InOrder,
    help="Ship logs through RabbitMQ and operate the queues they travel on.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # locals in tracebacks would show credentials
    context_settings={"help_option_names": ["-h", "--help"]},
    # Help as written, by click: markdown ate the * of '*.error' and the <exchange> of a
    # default, rich markup eats [default: ...]. (The rich_help_panel groups wait for a mode
    # that shows text verbatim; click lists the options in their order.)
    rich_markup_mode=None,
)


def examples(*commands: str) -> str:
    """An epilog of example command lines, shown as written: never re-wrapped or marked up.

    click keeps a paragraph that starts with ``\\b`` as it is, so a long example stays one
    line a user can copy; the man page (docs.py) prints the same lines.
    """
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in commands)


_state: dict[str, Any] = {"debug": False, "quiet": False, "context": None, "tls": {}, "stop": None}
_warned: set[str] = set()

P = ParamSpec("P")
R = TypeVar("R")


def tune_gc_for_throughput() -> None:
    """Collect garbage less often in commands that move records by the million.

    Records live for a batch, so most survive the default first-generation threshold
    (700 allocations) and collections find little (ship runs 20% faster without them).
    Objects made at startup are frozen out of every later collection.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def notify(message: str) -> None:
    """Print a notice for the operator on stderr (not with --quiet; errors always print)."""
    if not _state["quiet"]:
        stderr_console().print(f"logctl: {message}", markup=False)


def fail(message: str, code: ExitCode) -> typer.Exit:
    """Print an error as one line (whatever the message holds) and return the exit to raise."""
    one_line = " ".join(message.split())
    stderr_console().print(f"logctl: error: {one_line}", markup=False)
    return typer.Exit(int(code))


def edge(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command: LogctlError -> one line and its exit code; others -> exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        _state["stop"] = None  # a StopFlag of this command's, if it installs one
        try:
            result = fn(*args, **kwargs)
            stop = _state.get("stop")
            if stop is not None and stop.interrupted:
                raise typer.Exit(int(ExitCode.INTERRUPTED))  # cleaned up; Ctrl-C still says so
            return result
        except LogctlError as exc:
            if _state["debug"]:
                raise
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except BrokenPipeError:
            _quiet_broken_pipe()
            raise typer.Exit(0) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            if _state["debug"]:
                raise
            raise fail(
                f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", ExitCode.BUG
            ) from None

    return wrapper


def _quiet_broken_pipe() -> None:
    """``logctl ... | head``: stdout is gone; stop Python complaining about it at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class StopFlag:
    """SIGINT/SIGTERM once: finish cleanly. Twice: exit at once (130).

    A run stopped by SIGINT (Ctrl-C) exits 130 once it has cleaned up, as shells expect;
    one stopped by SIGTERM (systemd, kill) exits 0.
    """

    def __init__(self) -> None:
        self.stopped = False
        self.interrupted = False

    def __call__(self) -> bool:
        return self.stopped

    def install(self) -> StopFlag:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)
        _state["stop"] = self
        return self

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopped:
            os._exit(int(ExitCode.INTERRUPTED))
        self.stopped = True
        self.interrupted = signum == signal.SIGINT


# --- options shared by commands -------------------------------------------------------------

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Broker URL, or several joined by ; to fail over (env LOGCTL_URL). Default amqp://guest:guest@localhost:5672//",
        rich_help_panel="Broker and state",
    ),
]
ExchangeOpt = Annotated[
    str | None,
    typer.Option(
        "--exchange", help="Main exchange (env LOGCTL_EXCHANGE). Default logs", rich_help_panel="Broker and state"
    ),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Checkpoints and the default SQLite sink (env LOGCTL_STATE_DIR)",
        rich_help_panel="Broker and state",
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", help="TOML config file (env LOGCTL_CONFIG)", rich_help_panel="Broker and state"),
]
DeclareOpt = Annotated[
    bool | None,
    typer.Option(
        "--declare/--no-declare",
        help="--no-declare: create no exchange or queue, only check that they exist, for users without "
        "configure permission (env LOGCTL_DECLARE, config declare) [default: declare]",
        rich_help_panel="Broker and state",
    ),
]
OutputOpt = Annotated[
    OutputMode,
    typer.Option(
        "--output", "-o", help="auto: coloured on a terminal, JSON Lines when piped", rich_help_panel="Output"
    ),
]


MetricsOpt = Annotated[
    str | None,
    typer.Option(
        help="Serve Prometheus metrics on HOST:PORT (/metrics); see the README for the names", rich_help_panel="Output"
    ),
]


def serve_metrics(address: str | None) -> None:
    """Start the metrics endpoint when asked for."""
    if address is None:
        return
    from logctl import metrics
    from logctl.units import parse_address

    host, port = parse_address(address, "--metrics-address")
    notify(f"metrics on http://{host}:{metrics.serve(host, port)}/metrics")


def settings_from(config: Path | None = None, **flags: object) -> Settings:
    """Resolve Settings from the command's flags (and --context), the environment and the config file."""
    settings = from_environment(config, context=_state["context"], **_state["tls"], **flags)
    for warning in settings.warnings:
        if warning not in _warned:
            _warned.add(warning)
            notify(f"warning: {warning}")
    return settings


def complete_contexts(incomplete: str) -> list[str]:
    """Context names of the config file, for completion (nothing on any error)."""
    try:
        file = default_config_path(dict(os.environ))
        return [name for name in sorted(contexts_of(load_file(file))) if name.startswith(incomplete)]
    except LogctlError:
        return []


def _version(value: bool) -> None:
    if value:
        typer.echo(f"logctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No notices or summaries on stderr; errors still print")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")
    ] = False,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            help="A context of the config file (env LOGCTL_CONTEXT, else its current_context)",
            autocompletion=complete_contexts,
        ),
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="TLS: the CA that signed the broker's certificate (env LOGCTL_CA_FILE)")
    ] = None,
    cert_file: Annotated[
        Path | None, typer.Option(help="TLS: a client certificate, PEM (env LOGCTL_CERT_FILE)")
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option(help="TLS: the client certificate's key (env LOGCTL_KEY_FILE)")
    ] = None,
    insecure: Annotated[
        bool | None, typer.Option("--insecure", help="TLS without checking the broker's certificate")
    ] = None,
) -> None:
    """Ship logs through RabbitMQ and operate the queues they travel on.

    Exit codes: 0 ok, 1 bug, 2 usage, 3 config, 4 broker unreachable, 5 not found,
    6 bad input, 7 partial failure, 8 login refused, 9 permission denied, 10 locked,
    11 conflicting declaration, 130 interrupted.
    """
    _state["debug"] = debug
    _state["quiet"] = quiet
    # py-amqp warns through logging of frames it ignores on a channel being replaced after
    # a failover; logctl's own notices say what happened. --debug shows them.
    logging.getLogger("amqp").setLevel(logging.DEBUG if debug else logging.ERROR)
    _state["context"] = context
    _state["tls"] = {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file, "insecure": insecure}
