"""How a program ends when its service cannot start: one line, an exit status.

A port in use, an unreachable registry or a mistyped ``--micro-*`` flag is
the user's to fix, not a bug in the program, so the program that read its
options from its own command line and environment (``Service(...)``) or ran
the service as its main loop (``serve()``) ends with one line on stderr
naming what failed and why, and exit status 1 (2 for a bad option), as
argparse does for a bad argument. ``MICRO_DEBUG=1`` raises the error instead,
traceback included. Code that embeds a service (``running()``) gets the
exception itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

from .config.base import ConfigError
from .errors import MicroError

__all__ = [
    "EXIT_ERROR",
    "EXIT_USAGE",
    "StartFailed",
    "bad_options_exit",
    "debug_enabled",
    "describe",
    "exit_with",
    "root_cause",
]

EXIT_ERROR = 1
EXIT_USAGE = 2


def debug_enabled() -> bool:
    """Whether ``MICRO_DEBUG`` asks for tracebacks (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get("MICRO_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def root_cause(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups, cancellations left out;
    ``exc`` itself when it holds several or none."""
    leaves: list[BaseException] = []

    def walk(group: BaseExceptionGroup[BaseException]) -> None:
        for inner in group.exceptions:
            if isinstance(inner, BaseExceptionGroup):
                walk(inner)
            # Cancellations (asyncio's or Trio's) are the other tasks stopping
            # because of the real error; the event loop may be gone by now.
            elif type(inner).__name__ not in ("Cancelled", "CancelledError"):
                leaves.append(inner)

    if not isinstance(exc, BaseExceptionGroup):
        return exc
    walk(exc)
    return leaves[0] if len(leaves) == 1 else exc


def describe(exc: BaseException) -> str:
    """What went wrong, on one line: a micro error's detail, an OS error's message."""
    if isinstance(exc, MicroError):
        text = exc.detail or str(exc)
    elif isinstance(exc, OSError) and exc.strerror and exc.errno is not None:
        text = exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
        if not isinstance(exc, (ValueError, OSError)):
            text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())


class StartFailed(SystemExit):
    """The program ends because its service could not start; the reason is printed."""


def exit_with(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    _quiet_when_wrapped()
    raise StartFailed(code)


def _quiet_when_wrapped() -> None:
    """A program that ran ``serve()`` in a task group of its own gets the exit wrapped
    in an exception group, which Python would print as a traceback: the one line
    already said it all. (Python exits with status 1 then.)"""
    previous = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, BaseExceptionGroup) and isinstance(root_cause(value), StartFailed):
            return
        previous(kind, value, tb)

    sys.excepthook = excepthook


@contextlib.contextmanager
def bad_options_exit(enabled: bool, origin: str = "") -> Iterator[None]:
    """While enabled, a bad option (ConfigError or ValueError) inside ends the program
    with exit status 2 and one line (after ``origin:``, where the option came from),
    unless ``MICRO_DEBUG`` is set."""
    try:
        yield
    except (ConfigError, ValueError) as exc:
        if not enabled or debug_enabled():
            raise
        exit_with(f"{origin}: {describe(exc)}" if origin else describe(exc), EXIT_USAGE)
