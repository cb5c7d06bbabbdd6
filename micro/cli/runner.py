"""``micro run PATH``: run a service and restart it when its code changes.

The service runs as a child process (``python PATH``); watchfiles watches its
directory and, on a change to a Python file, stops the child with SIGINT (a
micro service then shuts down gracefully, deregistering first) and starts it
again. The child has a process group of its own, so a Ctrl-C in the terminal
reaches only ``micro run``, which stops the service with one SIGINT (SIGTERM
does the same). A parent that ignored SIGINT (a background job of a script,
some CI runners and process managers) does not make ``micro run`` or its
service deaf to it: both start with SIGINT handled as usual.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import typer
from watchfiles import Change, PythonFilter, run_process

from ._app import EXIT_USAGE, app, fail

__all__ = ["run_service"]

#: seconds a service has to stop after SIGINT before it gets SIGKILL
STOP_TIMEOUT = 20


@app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run_service(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="the service's main file, or its directory (main.py)"),
) -> None:
    """Run a service, restarting it when a Python file next to it changes.

    Arguments after PATH go to the service (micro run main.py --backend trio).
    """
    main = path / "main.py" if path.is_dir() else path
    if not main.is_file():
        fail(f"no service to run at {path} (a .py file, or a directory with main.py)", EXIT_USAGE)
    argv = [sys.executable, str(main), *ctx.args]

    def changed(changes: set[tuple[Change, str]]) -> None:
        names = sorted({Path(p).name for _, p in changes})
        print(f"micro run: {', '.join(names)} changed, restarting", file=sys.stderr, flush=True)

    print(f"micro run: {' '.join(argv)}", file=sys.stderr, flush=True)
    run_process(
        main.resolve().parent,
        target=f"{__name__}._exec_service",
        target_type="function",
        args=(argv,),
        callback=changed,
        watch_filter=PythonFilter(),
        # A service may take its grace period (10 s by default) to stop.
        sigint_timeout=STOP_TIMEOUT,
    )


def _exec_service(argv: list[str]) -> None:
    """The child: a process group of its own, SIGINT and SIGTERM as a fresh process has
    them (not ignored), then the service's Python in its place."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execv(argv[0], argv)
