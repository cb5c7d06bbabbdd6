"""Serving ASGI apps with hypercorn, on whichever of asyncio or Trio is running.

The listening socket is bound here, before hypercorn starts, so the caller
knows the port (``:0`` picks a free one) and a port in use is an error at
once. Hypercorn takes a duplicate of the socket (``fd://``) and closes that;
ours is closed when serving ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import anyio
import anyio.abc
from hypercorn.config import Config as HypercornConfig

from ..auth import Auth
from ..client.client import Client
from ..registry.base import Registry
from ..transport.listener import listen_error, parse_address
from .app import Gateway
from .asgi import ASGIApp
from .tools import McpOptions

__all__ = ["bind", "bound_address", "open_gateway", "serve_asgi", "serve_gateway"]

log = logging.getLogger("micro.gateway")

#: seconds requests in flight may take to finish once serving stops
GRACEFUL_TIMEOUT = 5.0

#: the gateway's MCP endpoint offers every endpoint; calls carry the caller's token
DEFAULT_MCP = McpOptions()


def bind(address: str) -> socket.socket:
    """A listening TCP socket on ``address`` (``:8080``, ``127.0.0.1:0``, ``[::1]:80``)."""
    host, port = parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise listen_error(host, port, exc) from exc
    return sock


def bound_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_asgi(
    app: ASGIApp,
    sock: socket.socket,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    graceful_timeout: float = GRACEFUL_TIMEOUT,
) -> None:
    """Serve ``app`` on the listening ``sock`` (HTTP/1.1 and h2c) until
    ``shutdown_trigger`` returns or the caller is cancelled.

    Either way hypercorn shuts down gracefully: it stops accepting and lets
    requests in flight finish for up to ``graceful_timeout`` seconds.
    """
    config = HypercornConfig()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = graceful_timeout
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        # hypercorn stops by its trigger, not by cancellation, so its task is
        # shielded and told to stop when this one ends for any reason.
        tg.start_soon(_run_hypercorn, app, config, stop)
        try:
            await (shutdown_trigger or anyio.sleep_forever)()
        finally:
            stop.set()


async def _run_hypercorn(app: ASGIApp, config: HypercornConfig, stop: anyio.Event) -> None:
    with anyio.CancelScope(shield=True):
        # hypercorn has one driver per event loop; the running one serves.
        if _running_trio():
            from hypercorn.trio import serve as serve_trio

            await serve_trio(app, config, shutdown_trigger=stop.wait, mode="asgi")  # type: ignore[arg-type]
        else:
            from hypercorn.asyncio import serve as serve_asyncio

            await serve_asyncio(app, config, shutdown_trigger=stop.wait, mode="asgi")  # type: ignore[arg-type]


def _running_trio() -> bool:
    try:
        # Trio depends on sniffio, so where it is missing Trio is not running.
        import sniffio
    except ImportError:
        return False
    return sniffio.current_async_library() == "trio"


@contextlib.asynccontextmanager
async def open_gateway(
    address: str = ":8080",
    *,
    registry: Registry | str | None = None,
    cors_origins: Sequence[str] = (),
    timeout: float | None = 30.0,
    mcp: McpOptions | None = DEFAULT_MCP,
    auth: Auth | None = None,
) -> AsyncIterator[str]:
    """Serve the gateway and dashboard on ``address`` while the block runs; yields the
    bound ``host:port``.

    ``mcp`` chooses the tools of the MCP endpoint at ``/mcp`` (None: no endpoint);
    it is served when the ``mcp`` extra is installed, to agents and to browser pages
    of ``cors_origins`` or ``mcp.allowed_origins`` only. ``auth`` (open, with the store
    of the accounts) makes the dashboard's ``/api`` need a sign-in and shows each
    account what the rules let it call.
    """
    sock = bind(address)
    try:
        async with (
            Client(registry=registry, timeout=timeout) as client,
            _registry_open(client),
            _mcp_endpoint(client, mcp, cors_origins) as mcp_app,
        ):
            app = Gateway(
                client, cors_origins=cors_origins, timeout=timeout, mcp=mcp_app, auth=auth
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(serve_asgi, app, sock)
                yield bound_address(sock)
                tg.cancel_scope.cancel()
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def _registry_open(client: Client) -> AsyncIterator[None]:
    """The client's registry, open before the port serves: the first request finds it
    open, and a registry that cannot be reached fails the start."""
    async with client.registry:
        await client.registry.list_services()
        yield


@contextlib.asynccontextmanager
async def _mcp_endpoint(
    client: Client, options: McpOptions | None, cors_origins: Sequence[str]
) -> AsyncIterator[ASGIApp | None]:
    if options is None:
        yield None
        return
    # The origins whose pages may call the gateway may use its tools too.
    extra = tuple(o for o in cors_origins if o not in options.allowed_origins)
    if extra:
        options = dataclasses.replace(options, allowed_origins=options.allowed_origins + extra)
    try:
        from .mcp import open_mcp
    except ImportError:
        log.info("no MCP endpoint at /mcp: pip install 'micro-runtime[mcp]' to serve one")
        yield None
        return
    async with open_mcp(client, options) as server, server.http_app() as app:
        yield app


async def serve_gateway(
    address: str = ":8080",
    *,
    registry: Registry | str | None = None,
    cors_origins: Sequence[str] = (),
    timeout: float | None = 30.0,
    auth: Auth | None = None,
    task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the gateway and dashboard until cancelled; ``task_status`` gets ``host:port``."""
    async with open_gateway(
        address, registry=registry, cors_origins=cors_origins, timeout=timeout, auth=auth
    ) as bound:
        log.info("gateway serving on http://%s", bound)
        task_status.started(bound)
        await anyio.sleep_forever()
