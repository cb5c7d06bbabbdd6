"""The ``micro`` command's app, its global options and how commands fail.

Every command that talks to services runs one event loop (``--backend``,
asyncio by default) and picks the registry, broker and store as services do:
``--registry``/``--broker``/``--store`` here, else ``MICRO_REGISTRY``,
``MICRO_BROKER``, ``MICRO_STORE``, read and checked by
:func:`micro.config.service_options`, else the defaults.

Exit codes: 0 when the command did what it was asked; 1 when a service, the
registry or a backend answered with an error (``error: <id>: <code> <status>:
<detail>`` on stderr, one line); 2 for bad input (usage, bad JSON, a bad flag
or variable); 130 when interrupted. A failure is one line on stderr; the
traceback is printed only with ``--debug`` or ``MICRO_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import anyio
import typer
from rich.console import Console

from .._startup import debug_enabled, describe, root_cause
from ..config import ConfigError, service_options
from ..errors import MicroError

__all__ = ["EXIT_ERROR", "EXIT_USAGE", "Backends", "app", "fail", "main", "run", "stdout"]

T = TypeVar("T")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="micro",
    help="Operate micro services: list, describe, call, stream, publish, and serve a gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Piped into another program, tables keep their rows on one line each (a terminal's
# own width applies when there is one).
stdout = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 240)


class UsageError(Exception):
    """Bad input to a command (exit code 2)."""


@dataclass(slots=True)
class Backends:
    """The registry, broker and store URLs commands use (None: the backend's default)."""

    registry: str | None = None
    broker: str | None = None
    store: str | None = None
    backend: str = "asyncio"
    debug: bool = False


#: filled in by the global options before any command runs
state = Backends()


@app.callback()
def main_options(
    registry: str | None = typer.Option(
        None,
        "--registry",
        "--micro-registry",
        help="registry URL: mdns, etcd://host:port, memory [MICRO_REGISTRY]",
    ),
    broker: str | None = typer.Option(
        None, "--broker", "--micro-broker", help="broker URL: http, nats://host:port [MICRO_BROKER]"
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        "--micro-store",
        help="store URL: file, file:///path, etcd://…, redis://…, postgres://…, "
        "cockroachdb://…, s3://bucket/prefix?endpoint=… [MICRO_STORE]",
    ),
    backend: str = typer.Option(
        "asyncio", "--backend", help="event loop: asyncio, trio, or uvloop (asyncio on uvloop)"
    ),
    debug: bool = typer.Option(
        False, "--debug", help="print the traceback of a failure [MICRO_DEBUG=1]"
    ),
) -> None:
    """Operate micro services from the terminal."""
    try:
        env = service_options(argv=[], environ=os.environ)
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    if backend not in ("asyncio", "trio", "uvloop"):
        fail(f"--backend must be asyncio, trio or uvloop, not {backend!r}", EXIT_USAGE)
    state.registry = registry or env.get("registry")
    state.broker = broker or env.get("broker")
    state.store = store or env.get("store")
    state.backend = backend
    state.debug = debug or debug_enabled()


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    raise typer.Exit(code)


def run(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` on the chosen event loop; errors become one line and an exit code."""
    try:
        if state.backend == "uvloop":  # the uvloop extra
            return anyio.run(fn, *args, backend="asyncio", backend_options={"use_uvloop": True})
        return anyio.run(fn, *args, backend=state.backend)
    except BaseException as exc:
        error = root_cause(exc)
        if isinstance(error, typer.Exit):
            raise error from None
        if isinstance(error, KeyboardInterrupt):
            raise typer.Exit(EXIT_INTERRUPTED) from None
        if state.debug or not isinstance(error, Exception):
            raise
        if isinstance(error, MicroError):
            fail(str(error), EXIT_ERROR)
        if isinstance(error, (UsageError, ConfigError, ValueError)):
            fail(str(error), EXIT_USAGE)
        fail(describe(error), EXIT_ERROR)


def parse_json(text: str, what: str) -> Any:
    """``text`` as JSON, or a usage error naming ``what``."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not valid JSON: {exc}") from None


def parse_metadata(pairs: list[str] | None) -> dict[str, str]:
    """``-H key=value`` options as a metadata dict."""
    metadata: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-H takes key=value, got {pair!r}")
        metadata[key.strip().lower()] = value
    return metadata


def print_json(value: Any, *, indent: int | None = 2) -> None:
    """Write ``value`` as JSON to stdout (bytes as text when they are UTF-8)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "backslashreplace")
    sys.stdout.write(json.dumps(value, indent=indent, default=str) + "\n")
    sys.stdout.flush()


def main() -> None:
    """Run the command: a usage error too is one line on stderr (exit status 2)."""
    # Python leaves SIGINT ignored when its parent ignored it (a script's background
    # job, some CI runners and process managers); Ctrl-C must still stop a command.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        # click's errors (typer's own copy of click in recent typer) carry the
        # message and the exit code; anything else is not a usage error.
        message = getattr(exc, "format_message", None)
        code = getattr(exc, "exit_code", None)
        if message is None or not isinstance(code, int):
            raise
        text = str(message())
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(text, file=sys.stderr, flush=True)  # the help, as click prints it
        else:
            print(f"error: {' '.join(text.split())}", file=sys.stderr, flush=True)
    sys.exit(code if isinstance(code, int) else 0)
