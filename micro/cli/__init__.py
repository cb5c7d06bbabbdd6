"""The ``micro`` command: list, describe, call and stream services; publish and
subscribe; publish and follow event streams; read the store and config;
scaffold and run services; serve the HTTP API gateway and dashboard.

``main()`` is the console script; ``app`` is the typer application.
"""

from . import calls, data, events, gateway, mcp, runner, scaffold, services
from ._app import app, main

__all__ = [
    "app",
    "calls",
    "data",
    "events",
    "gateway",
    "main",
    "mcp",
    "runner",
    "scaffold",
    "services",
]
