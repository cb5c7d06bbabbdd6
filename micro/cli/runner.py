"""``micro run PATH``: run a service and restart it when its code changes.

The service runs as a child process (``python PATH``); watchfiles watches its
directory and, on a change to a Python file, stops the child with SIGINT (a
micro service then shuts down gracefully, deregistering first) and starts it
again. SIGINT or SIGTERM to ``micro run`` stops the child the same way.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from watchfiles import Change, PythonFilter, run_process

from ._app import EXIT_USAGE, app, fail

__all__ = ["run_service"]


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
    command = shlex.join([sys.executable, str(main), *ctx.args])

    def changed(changes: set[tuple[Change, str]]) -> None:
        names = sorted({Path(p).name for _, p in changes})
        print(f"micro run: {', '.join(names)} changed, restarting", file=sys.stderr, flush=True)

    print(f"micro run: {command}", file=sys.stderr, flush=True)
    run_process(
        main.resolve().parent,
        target=command,
        target_type="command",
        callback=changed,
        watch_filter=PythonFilter(),
    )
