"""Services as tools for AI agents: a Model Context Protocol server over the registry.

How it works. :class:`McpServer` keeps the tools of every registered service
(:mod:`micro.gateway.tools` derives them from the registry records) and
follows the registry: a watch on every service triggers a re-read, and when
the set of tools differs, clients are told ``notifications/tools/list_changed``
(clients on the 2026-07-28 protocol receive it on their ``subscriptions/listen``
stream, older ones on the connection's own stream). ``tools/call`` becomes a
call through :class:`micro.Client`, so discovery, selection, retries and the
services' auth rules apply as for any caller:

- the call carries a bearer token: on HTTP the caller's own ``Authorization``
  header, else the server's ``token`` (``micro mcp --token`` or
  ``MICRO_MCP_TOKEN``);
- a micro error comes back as a tool error (``isError``) whose text and
  ``structuredContent.error`` carry its id, code, status and detail;
- a server stream reports progress per message to a client that sent a
  progress token, and returns the messages collected (at most
  ``max_stream_messages``; leaving the stream early cancels it);
- a cancelled MCP request cancels the call: the handler task is cancelled,
  which resets the RPC's stream, and the service's handler is cancelled.

Transports: :meth:`McpServer.serve_stdio` for agents that start ``micro mcp``
as a subprocess, and :meth:`McpServer.http_app` (Streamable HTTP) that the
gateway serves at ``/mcp``. Both run on asyncio and on Trio.

The SDK (``pip install 'micro-runtime[mcp]'``) is imported only by this
module, so the rest of micro runs without it. That is also
why it is one module past the usual size: splitting it would spread the
optional dependency.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import msgspec
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError

from ..client.client import Client
from ..errors import Forbidden, MicroError, NotFound, Timeout
from ..registry.base import ServiceNotFound, ServiceRecord
from .asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    request_headers,
    request_path,
    send_error,
    serve_lifespan,
)
from .tools import McpOptions, ServiceTool, patterns, tools_from_records

__all__ = ["McpOptions", "McpRoute", "McpServer", "open_mcp", "patterns"]

log = logging.getLogger("micro.mcp")

#: seconds between a registry change and the re-read it triggers, so a burst
#: of changes (a service's nodes starting together) is read once
SETTLE = 0.1
#: seconds to wait before watching the registry again after a watch is lost
REWATCH_DELAY = 1.0
#: seconds one client may take to accept a list-changed notification
NOTIFY_TIMEOUT = 5.0


class _ToolsServer(Server[Any]):
    """The SDK's server, announcing ``tools.listChanged`` on every transport."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


class McpServer:
    """An MCP server whose tools are the registry's endpoints; see the module doc.

    Use :func:`open_mcp`, which reads the registry and follows it while open.
    """

    def __init__(self, client: Client, options: McpOptions | None = None) -> None:
        self.client = client
        self.options = options or McpOptions()
        #: the tools offered now, by name
        self.tools: dict[str, ServiceTool] = {}
        self._bus = InMemorySubscriptionBus()
        self._listen = ListenHandler(self._bus)
        # Connections on handshake-era protocols, told of changes on their own stream.
        self._sessions: set[ServerSession] = set()
        self._changed = anyio.Event()
        self._refreshing = anyio.Lock()
        self.server = _ToolsServer(
            "micro",
            title="micro services",
            instructions=(
                "Each tool calls one endpoint of a running micro service; "
                "the list follows the services that come and go."
            ),
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=self._listen,
        )
        self.server.add_notification_handler(
            "notifications/initialized", types.NotificationParams, self._initialized
        )

    # -- the tool list -------------------------------------------------------------

    async def refresh(self) -> bool:
        """Read the registry again; notify clients and return True if the tools changed."""
        async with self._refreshing:
            return await self._refresh()

    async def _refresh(self) -> bool:
        registry = self.client.registry
        records: list[ServiceRecord] = []
        names = sorted({r.name for r in await registry.list_services()})
        for name in names:
            try:
                records.extend(await registry.get_service(name))
            except ServiceNotFound:
                continue  # gone between the two reads
        tools = tools_from_records(
            records,
            expose=self.options.expose,
            hide=self.options.hide,
            max_stream_messages=self.options.max_stream_messages,
        )
        if tools == self.tools:
            return False
        self.tools = tools
        log.info("MCP tools: %d (%s)", len(tools), ", ".join(tools) or "none")
        await self._tell_changed()
        return True

    async def follow(self) -> None:
        """Keep :attr:`tools` current with the registry until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._reread_on_change)
            while True:
                try:
                    async with self.client.registry.watch() as events:
                        # Anything that changed before the watch began is read now.
                        self._changed.set()
                        async for _ in events:
                            self._changed.set()
                except Exception as exc:
                    # The watch is lost (a backend restart, a network fault): the
                    # tools stay as they were until it is back.
                    log.warning("MCP: watching the registry failed: %s", exc)
                await anyio.sleep(REWATCH_DELAY)

    async def _reread_on_change(self) -> None:
        while True:
            await self._changed.wait()
            await anyio.sleep(SETTLE)
            self._changed = anyio.Event()
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("MCP: reading the registry failed: %s", exc)
                self._changed.set()
                await anyio.sleep(REWATCH_DELAY)

    async def _try_refresh(self) -> None:
        """Refresh inside a request: the registry failing leaves the tools as they were."""
        try:
            await self.refresh()
        except Exception as exc:
            log.warning("MCP: reading the registry failed: %s", exc)

    async def _tell_changed(self) -> None:
        await self._bus.publish(ToolsListChanged())
        for session in list(self._sessions):
            # Best effort, and bounded: a client that stopped reading delays no one.
            with anyio.move_on_after(NOTIFY_TIMEOUT):
                try:
                    await session.send_tool_list_changed()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._sessions.discard(session)

    async def _initialized(
        self, ctx: ServerRequestContext[Any, Any], params: types.NotificationParams
    ) -> None:
        # A handshake-era connection: remember it until it closes.
        session = ctx.session
        self._sessions.add(session)
        connection = getattr(session, "_connection", None)
        exit_stack = getattr(connection, "exit_stack", None)
        if isinstance(exit_stack, contextlib.AsyncExitStack):
            exit_stack.callback(self._sessions.discard, session)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        if self._changed.is_set():
            # A change is known and not read yet: answer with it.
            await self._try_refresh()
        return types.ListToolsResult(tools=[_mcp_tool(t) for t in self.tools.values()])

    # -- calls -----------------------------------------------------------------------

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = self.tools.get(params.name)
        if tool is None:
            # Perhaps a service that started a moment ago: read the registry once more.
            await self._try_refresh()
            tool = self.tools.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"unknown tool {params.name!r}")
        arguments: dict[str, Any] = dict(params.arguments or {})
        request: Any = arguments.get("request") if tool.wraps_request else arguments
        metadata = self._credentials(ctx)
        try:
            if tool.kind == "server_stream":
                return await self._collect(ctx, tool, request, metadata)
            result = await self._unary(ctx, tool, request, metadata)
        except MicroError as error:
            return _tool_error(error)
        structured = {"result": result} if tool.wraps_result else result
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=_json(result))],
            structured_content=structured if isinstance(structured, dict) else None,
        )

    async def _unary(
        self,
        ctx: ServerRequestContext[Any, Any],
        tool: ServiceTool,
        request: Any,
        metadata: dict[str, str],
    ) -> Any:
        """Call, reporting the seconds waited while the call runs if the client asked."""

        async def call() -> Any:
            return await self.client.call(
                tool.service,
                tool.endpoint,
                request,
                Any,
                metadata=metadata,
                timeout=self.options.timeout,
            )

        if not _wants_progress(ctx):
            return await call()
        outcome: list[Any] = []
        failed: list[MicroError] = []

        async def run(scope: anyio.CancelScope) -> None:
            try:
                outcome.append(await call())
            except MicroError as error:
                failed.append(error)
            finally:
                scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, tg.cancel_scope)
            waited = 0.0
            while True:
                await anyio.sleep(self.options.progress_interval)
                waited += self.options.progress_interval
                await ctx.session.report_progress(
                    waited, None, f"waiting for {tool.service}: {waited:g}s"
                )
        if failed:
            raise failed[0]
        return outcome[0]

    async def _collect(
        self,
        ctx: ServerRequestContext[Any, Any],
        tool: ServiceTool,
        request: Any,
        metadata: dict[str, str],
    ) -> types.CallToolResult:
        """Collect a server stream's messages, up to the bound and the timeout."""
        limit = self.options.max_stream_messages
        messages: list[Any] = []
        truncated = False
        with anyio.move_on_after(_or_inf(self.options.timeout)) as bound:
            async with self.client.stream(
                tool.service, tool.endpoint, request, Any, metadata=metadata
            ) as stream:
                async for message in stream:
                    messages.append(message)
                    await ctx.session.report_progress(
                        len(messages), limit, f"{len(messages)} messages received"
                    )
                    if len(messages) >= limit:
                        # Leaving the block resets the stream and cancels its handler.
                        truncated = True
                        break
        if bound.cancelled_caught:
            if not messages:
                raise Timeout(
                    f"{tool.service} sent no message within {self.options.timeout}s",
                    id="micro.mcp",
                )
            truncated = True
        out = {"messages": messages, "truncated": truncated}
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=_json(out))], structured_content=out
        )

    def _credentials(self, ctx: ServerRequestContext[Any, Any]) -> dict[str, str]:
        """The call's ``authorization``: the HTTP caller's own, else the configured token."""
        headers = getattr(ctx.request, "headers", None)
        given = headers.get("authorization") if headers is not None else None
        if given:
            return {"authorization": given}
        token = self.options.token
        if not token:
            return {}
        return {"authorization": token if " " in token else f"Bearer {token}"}

    # -- transports ------------------------------------------------------------------

    async def serve_stdio(self) -> None:
        """Serve one client on this process's stdin and stdout until it closes them."""
        async with stdio_server() as (read, write):
            await self.server.run(read, write, self.server.create_initialization_options())

    @contextlib.asynccontextmanager
    async def http_app(self) -> AsyncIterator[ASGIApp]:
        """The Streamable HTTP endpoint as an ASGI app, served while the block runs.

        Mount it at a path of your choosing (the gateway serves it at ``/mcp``).
        """
        manager = StreamableHTTPSessionManager(self.server)
        async with manager.run():
            yield _OriginCheck(StreamableHTTPASGIApp(manager), self.options.allowed_origins)


class _OriginCheck:
    """Refuses (403) a request whose ``Origin`` is not one of ``allowed`` ("*": any).

    The MCP specification asks HTTP servers to validate ``Origin``, against DNS
    rebinding: a page on another site whose name is made to resolve to this
    host would otherwise reach the tools from the user's browser. Browsers send
    ``Origin`` with such requests; agents send none, and are let through.
    """

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.allowed = frozenset(origin.rstrip("/") for origin in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "*" not in self.allowed:
            origin = next((v for k, v in request_headers(scope) if k == "origin"), None)
            if origin is not None and origin.rstrip("/") not in self.allowed:
                refused = Forbidden(
                    f"requests from origin {origin} may not use this MCP endpoint",
                    id="micro.mcp",
                )
                await send_error(send, refused, [])
                return
        await self.app(scope, receive, send)


class McpRoute:
    """``app`` served at ``path`` alone, on its own (``micro mcp --address``): other
    paths answer 404, and the ASGI lifespan is answered here."""

    def __init__(self, app: ASGIApp, path: str = "/mcp") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
        elif scope["type"] == "http" and request_path(scope).rstrip("/") == self.path:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            error = NotFound(f"the MCP endpoint is {self.path}", id="micro.mcp")
            await send_error(send, error, [])


@contextlib.asynccontextmanager
async def open_mcp(client: Client, options: McpOptions | None = None) -> AsyncIterator[McpServer]:
    """An :class:`McpServer` over ``client``'s registry, following it while the block runs."""
    server = McpServer(client, options)
    async with client.registry, anyio.create_task_group() as tg:
        # A registry that cannot be read fails the start, with the reason; once
        # running, a registry that fails leaves the tools as they were.
        await server.refresh()
        tg.start_soon(server.follow)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


def _mcp_tool(tool: ServiceTool) -> types.Tool:
    return types.Tool(
        name=tool.name,
        title=f"{tool.service} {tool.endpoint}",
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=types.ToolAnnotations(idempotent_hint=True) if tool.idempotent else None,
    )


def _wants_progress(ctx: ServerRequestContext[Any, Any]) -> bool:
    meta = ctx.meta
    return bool(meta) and meta.get("progress_token") is not None  # type: ignore[union-attr]


def _tool_error(error: MicroError) -> types.CallToolResult:
    """A micro error as an MCP tool error: the agent sees what went wrong and can act."""
    body = {"id": error.id, "code": error.code, "status": error.status, "detail": error.detail}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"error {error.code}: {error.detail}")],
        structured_content={"error": body},
        is_error=True,
    )


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return msgspec.json.encode(value).decode()


def _or_inf(timeout: float | None) -> float:
    return float("inf") if timeout is None else timeout
