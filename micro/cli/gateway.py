"""``micro gateway``: serve the HTTP API gateway and the dashboard."""

from __future__ import annotations

import contextlib
import signal
import sys

import anyio
import typer

from ..auth import Auth, KeySet
from ..gateway.server import open_gateway
from ..gateway.tools import McpOptions, patterns
from ..store import resolve_store
from ._app import EXIT_USAGE, app, fail, run, state

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
    auth_keys: str | None = typer.Option(
        None,
        "--auth-keys",
        envvar="MICRO_AUTH_KEYS",
        help="key set (directory or PEM file) of the services' auth: the dashboard then "
        "needs a sign-in with an account of the store [MICRO_AUTH_KEYS]",
    ),
) -> None:
    """Serve POST /{service}/{Endpoint} JSON calls, the dashboard at / and MCP at /mcp until
    interrupted."""

    try:
        keys = KeySet.load(auth_keys) if auth_keys else None
    except (OSError, ValueError) as exc:
        fail(f"--auth-keys: {exc}", EXIT_USAGE)

    async def main() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            tools = McpOptions(
                expose=patterns(mcp_expose) or ("*",), hide=patterns(mcp_hide), timeout=timeout
            )
            async with contextlib.AsyncExitStack() as stack:
                auth = None
                if keys is not None:
                    # Accounts and granted rules are read from the store the services share.
                    auth = Auth(keys, store=resolve_store(state.store))
                    await stack.enter_async_context(auth)
                bound = await stack.enter_async_context(
                    open_gateway(
                        address,
                        registry=state.registry,
                        cors_origins=cors,
                        timeout=timeout,
                        mcp=tools,
                        auth=auth,
                    )
                )
                print(f"gateway serving on http://{bound}", file=sys.stderr, flush=True)
                async for _ in signals:
                    break

    run(main)
