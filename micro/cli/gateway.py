"""``micro gateway``: serve the HTTP API gateway and the dashboard."""

from __future__ import annotations

import signal
import sys

import anyio
import typer

from ..gateway.server import open_gateway
from ..gateway.tools import McpOptions, patterns
from ._app import app, run, state

__all__ = ["gateway"]


@app.command()
def gateway(
    address: str = typer.Option(":8080", "--address", help="host:port to listen on"),
    cors: list[str] = typer.Option(
        [], "--cors", help="an origin browsers may call from, or '*' (repeatable)"
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds a call may take"),
    mcp_expose: list[str] = typer.Option(
        [], "--mcp-expose", help="tools /mcp offers: service.Handler.Method patterns (default all)"
    ),
    mcp_hide: list[str] = typer.Option([], "--mcp-hide", help="tools /mcp never offers"),
) -> None:
    """Serve POST /{service}/{Endpoint} JSON calls, the dashboard at / and MCP at /mcp until
    interrupted."""

    async def main() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            tools = McpOptions(
                expose=patterns(mcp_expose) or ("*",), hide=patterns(mcp_hide), timeout=timeout
            )
            async with open_gateway(
                address, registry=state.registry, cors_origins=cors, timeout=timeout, mcp=tools
            ) as bound:
                print(f"gateway serving on http://{bound}", file=sys.stderr, flush=True)
                async for _ in signals:
                    break

    run(main)
