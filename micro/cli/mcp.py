"""``micro mcp``: the registry's services as tools for AI agents, over MCP on stdio.

An agent host (Claude Desktop, an IDE, an agent SDK) starts ``micro mcp`` as a
subprocess and speaks the Model Context Protocol on its stdin and stdout;
``--address`` serves Streamable HTTP at ``/mcp`` instead. Logs go to stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import anyio
import typer

from ._app import UsageError, app, run, state

__all__ = ["mcp"]


@app.command()
def mcp(
    expose: list[str] = typer.Option(
        [],
        "--expose",
        help="offer only endpoints matching this service.Handler.Method pattern "
        "(repeatable or comma-separated; default all) [MICRO_MCP_EXPOSE]",
    ),
    hide: list[str] = typer.Option(
        [],
        "--hide",
        help="never offer endpoints matching this pattern (repeatable) [MICRO_MCP_HIDE]",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="MICRO_MCP_TOKEN",
        help="bearer token the calls carry, so the services' auth rules decide",
    ),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds a call may take"),
    max_stream_messages: int = typer.Option(
        100, "--max-stream-messages", help="messages a server stream returns at most"
    ),
    address: str | None = typer.Option(
        None,
        "--address",
        help="serve Streamable HTTP at http://ADDRESS/mcp instead of stdio (host:port)",
    ),
    allow_origin: list[str] = typer.Option(
        [],
        "--allow-origin",
        help="with --address: a browser origin (https://host[:port]) whose pages may call "
        "the tools; others are refused, agents (no Origin) answered (repeatable or "
        "comma-separated; * for any) [MICRO_MCP_ORIGINS]",
    ),
) -> None:
    """Serve every registered endpoint as an MCP tool (stdio, for agent hosts)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    async def main() -> None:
        try:
            from ..gateway.mcp import McpOptions, McpRoute, open_mcp, patterns
        except ImportError as exc:
            raise UsageError(
                f"micro mcp needs the MCP SDK ({exc}): pip install 'micro-runtime[mcp]'"
            ) from None
        from ..client.client import Client

        options = McpOptions(
            expose=patterns(expose or [os.environ.get("MICRO_MCP_EXPOSE", "")]) or ("*",),
            hide=patterns(hide or [os.environ.get("MICRO_MCP_HIDE", "")]),
            token=token or None,
            timeout=timeout if timeout > 0 else None,
            max_stream_messages=max_stream_messages,
            allowed_origins=patterns(allow_origin or [os.environ.get("MICRO_MCP_ORIGINS", "")]),
        )
        async with (
            Client(registry=state.registry, timeout=options.timeout) as client,
            open_mcp(client, options) as server,
        ):
            if address is None:
                await server.serve_stdio()
                return
            from ..gateway.server import bind, bound_address, serve_asgi

            sock = bind(address)
            try:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async with server.http_app() as mcp_app, anyio.create_task_group() as tg:
                        tg.start_soon(serve_asgi, McpRoute(mcp_app), sock)
                        where = f"http://{bound_address(sock)}/mcp"
                        print(f"MCP serving on {where}", file=sys.stderr, flush=True)
                        async for _ in signals:
                            break
                        tg.cancel_scope.cancel()
            finally:
                sock.close()

    run(main)
