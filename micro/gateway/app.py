"""The HTTP API gateway: JSON over HTTP in front of every registered service.

Routes (``service`` is a registered name, ``Endpoint`` is ``Handler.Method``):

- ``POST /{service}/{Endpoint}`` or ``POST /{service}/{Handler}/{Method}``, or
  ``POST /{service}`` with a ``Micro-Endpoint`` header: the JSON body is the
  request, the JSON response the answer. The call goes through
  :class:`micro.Client`, so the registry, the selector, retries and outlier
  ejection apply. Endpoints that stream responses answer with one JSON line
  per message (NDJSON), or Server-Sent Events with ``Accept:
  text/event-stream``; ``Accept: application/x-ndjson`` asks for NDJSON from
  any endpoint.
- ``/mcp`` the services as tools for AI agents (Model Context Protocol,
  Streamable HTTP; see :mod:`micro.gateway.mcp`), when served by
  :func:`~micro.gateway.open_gateway` with the ``mcp`` extra installed.
- ``GET /`` the dashboard (its scripts and styles under ``/static/``);
  ``GET /api/services``, ``/api/services/{service}``,
  ``/api/services/{service}/metrics``, ``/api/health/{service}``,
  ``/api/nodes/{service}/{node}``, ``/api/topics`` and ``/api/auth`` the JSON
  it reads (see :mod:`micro.gateway.api`), ``POST /api/login`` its sign-in and
  ``POST /api/refresh`` the renewal of its token.

With ``auth``, the ``/api`` pages need a bearer token (``POST /api/login``
exchanges an account's id and secret for one) and show an account only the
services and endpoints the rules let it call; calls through the gateway are
checked against the same rules before they are made (and again by services
with auth on).

Errors are the HTTP status of the micro error and its JSON body. Request
headers become call metadata (transport and browser headers excepted), so an
``Authorization`` header reaches the service as the ``authorization``
metadata its auth middleware checks. ``Micro-Timeout`` (``5s``, ``250ms``)
bounds a call (unary calls have the gateway's default, streams none); a
client that disconnects from a stream cancels the call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

import anyio
import msgspec

from ..auth import Auth
from ..client.client import Client
from ..config.values import to_duration
from ..errors import (
    BadRequest,
    InternalServerError,
    MethodNotAllowed,
    MicroError,
    NotFound,
    UnsupportedMediaType,
)
from ..server.server import DEFAULT_MAX_MESSAGE_SIZE
from ..transport.headers import metadata_from_headers
from .api import DashboardApi
from .asgi import (
    NDJSON,
    ASGIApp,
    EventStream,
    Receive,
    Scope,
    Send,
    read_body,
    request_headers,
    request_path,
    send_error,
    send_response,
    streamed_media_type,
    until_disconnect,
)

__all__ = ["Gateway"]

log = logging.getLogger("micro.gateway")

#: the dashboard's files: name -> content type
_STATIC = {
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "form.js": "text/javascript; charset=utf-8",
}

#: request headers a browser or proxy adds that are not the caller's metadata
_NOT_METADATA = frozenset(
    {
        "accept-language",
        "cache-control",
        "cookie",
        "dnt",
        "forwarded",
        "micro-timeout",
        "origin",
        "pragma",
        "priority",
        "referer",
        "upgrade-insecure-requests",
        "via",
    }
)


class Gateway:
    """An ASGI app routing HTTP calls to services through an open :class:`~micro.Client`.

    ``cors_origins`` lists the origins browsers may call from (``"*"`` for
    any); none by default. ``timeout`` bounds each call unless the request
    sets ``Micro-Timeout``. ``auth`` (open) makes the dashboard's ``/api`` and the
    calls need a token the rules admit, and ``/mcp`` a valid token (its tool calls
    carry it, so the services' rules apply to them).
    """

    def __init__(
        self,
        client: Client,
        *,
        cors_origins: Sequence[str] = (),
        timeout: float | None = 30.0,
        dashboard: bool = True,
        max_body_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        mcp: ASGIApp | None = None,
        auth: Auth | None = None,
    ) -> None:
        self.client = client
        self.auth = auth
        self.api = DashboardApi(client, auth)
        #: the MCP endpoint served at ``/mcp`` (see :mod:`micro.gateway.mcp`)
        self.mcp = mcp
        self.cors_origins = frozenset(cors_origins)
        self.timeout = timeout
        self.dashboard = dashboard
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.mcp is not None and request_path(scope).rstrip("/") == "/mcp":
            if self.auth is not None:  # as for /api: no tools, not even their list, unsigned
                try:
                    await self.api.account(request_headers(scope))
                except MicroError as error:
                    await send_error(send, error, [("www-authenticate", "Bearer")])
                    return
            await self.mcp(scope, receive, send)
            return
        headers = request_headers(scope)
        cors = self._cors_headers(headers)
        method = scope["method"]
        path = request_path(scope)
        try:
            if method == "OPTIONS" and cors:
                await send_response(send, 204, b"", "text/plain", self._preflight(headers, cors))
            elif method in ("GET", "HEAD") and path == "/" and self.dashboard:
                await self._dashboard(scope, send, cors)
            elif method in ("GET", "HEAD"):
                await self._get(path, headers, send, cors)
            elif method == "POST" and path.rstrip("/") in ("/api/login", "/api/refresh"):
                body = await read_body(receive, self.max_body_size)
                exchange = self.api.login if path.rstrip("/") == "/api/login" else self.api.refresh
                await _send_json(send, await exchange(body), cors)
            elif method == "POST":
                await self._call(path, headers, receive, send, cors)
            else:
                raise MethodNotAllowed(
                    f"method {method} not allowed: POST /{{service}}/{{Endpoint}}",
                    id="micro.gateway",
                )
        except MicroError as error:
            await send_error(send, error, cors)
        except Exception as exc:
            log.error("gateway request %s %s failed", method, path, exc_info=exc)
            await send_error(send, InternalServerError("gateway error", id="micro.gateway"), cors)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Hold the client's registry open from the server's start-up to its shut-down,
        so the first request finds it open; one that cannot open fails the start-up."""
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            await self.client.registry.__aenter__()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        try:
            await send({"type": "lifespan.startup.complete"})
            while (await receive())["type"] != "lifespan.shutdown":
                pass
        finally:
            with anyio.CancelScope(shield=True):
                await self.client.registry.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})

    # -- CORS ------------------------------------------------------------------

    def _cors_headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        origin = next((v for k, v in headers if k == "origin"), None)
        if origin is None or not self.cors_origins:
            return []
        if "*" in self.cors_origins:
            return [("access-control-allow-origin", "*")]
        if origin in self.cors_origins:
            return [("access-control-allow-origin", origin), ("vary", "Origin")]
        return []

    def _preflight(
        self, headers: list[tuple[str, str]], cors: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        asked = next((v for k, v in headers if k == "access-control-request-headers"), "")
        return [
            *cors,
            ("access-control-allow-methods", "GET, POST, OPTIONS"),
            ("access-control-allow-headers", asked or "content-type, authorization"),
            ("access-control-max-age", "600"),
        ]

    # -- dashboard and its JSON --------------------------------------------------

    async def _dashboard(self, scope: Scope, send: Send, cors: list[tuple[str, str]]) -> None:
        full: str = scope.get("path") or "/"
        if not full.endswith("/"):
            # Mounted under a prefix and asked for without the slash: the page's
            # relative links (api/services, ...) only resolve below the slash.
            query = scope.get("query_string") or b""
            location = full + "/" + ("?" + query.decode("latin-1") if query else "")
            await send_response(send, 308, b"", "text/plain", [*cors, ("location", location)])
            return
        page = resources.files(__package__).joinpath("static", "dashboard.html").read_bytes()
        await send_response(send, 200, page, "text/html; charset=utf-8", cors)

    async def _get(
        self, path: str, headers: list[tuple[str, str]], send: Send, cors: list[tuple[str, str]]
    ) -> None:
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "static" and parts[1] in _STATIC:
            body = resources.files(__package__).joinpath("static", parts[1]).read_bytes()
            await send_response(send, 200, body, _STATIC[parts[1]], cors)
            return
        if parts[:1] != ["api"]:
            raise NotFound(f"no page {path}; calls are POST /{{service}}/{{Endpoint}}")
        await _send_json(send, await self.api.get(parts[1:], headers), cors)

    # -- calls -------------------------------------------------------------------

    async def _call(
        self,
        path: str,
        headers: list[tuple[str, str]],
        receive: Receive,
        send: Send,
        cors: list[tuple[str, str]],
    ) -> None:
        service, endpoint = _route(path, headers)
        await self.api.check_call(headers, service, endpoint)
        content_type = next((v for k, v in headers if k == "content-type"), "application/json")
        if content_type.partition(";")[0].strip().lower() not in ("application/json", ""):
            raise UnsupportedMediaType(
                f"the gateway takes application/json, not {content_type}", id="micro.gateway"
            )
        body = await read_body(receive, self.max_body_size)
        try:
            request = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"invalid JSON body: {exc}", id="micro.gateway") from None
        metadata = metadata_from_headers(
            (k, v) for k, v in headers if k not in _NOT_METADATA and not k.startswith("sec-")
        )
        timeout = self.timeout
        given = next((v for k, v in headers if k == "micro-timeout"), None)
        if given is not None:
            try:
                timeout = to_duration(given)
            except ValueError as exc:
                raise BadRequest(f"Micro-Timeout: {exc}", id="micro.gateway") from None
        stream_as = streamed_media_type(headers)
        if stream_as is None and await self._streams_responses(service, endpoint):
            stream_as = NDJSON
        if stream_as is not None:
            # Streams may be long-lived feeds: only an explicit Micro-Timeout bounds them.
            stream_timeout = timeout if given is not None else None
            await self._stream(
                service, endpoint, request, metadata, stream_timeout, stream_as, receive, send, cors
            )
            return
        result = await self.client.call(
            service, endpoint, request, Any, metadata=metadata, timeout=timeout
        )
        # One line with its newline, as services answer plain calls.
        body = msgspec.json.encode(result) + b"\n"
        await send_response(send, 200, body, "application/json", cors)

    async def _streams_responses(self, service: str, endpoint: str) -> bool:
        """Whether the registry records ``endpoint`` as streaming its responses."""
        # The client's registry cache: what the call itself is about to read.
        records = await self.client._lookup(service)
        for record in records:
            for info in record.endpoints:
                if info.name == endpoint:
                    return info.metadata.get("kind") in ("server_stream", "bidi_stream")
        return False

    async def _stream(
        self,
        service: str,
        endpoint: str,
        request: Any,
        metadata: dict[str, str],
        timeout: float | None,
        media_type: str,
        receive: Receive,
        send: Send,
        cors: list[tuple[str, str]],
    ) -> None:
        """Relay a server stream until it ends or the HTTP client goes away."""
        out = EventStream(send, media_type, cors)
        failed: MicroError | None = None

        async def relay() -> None:
            nonlocal failed
            try:
                async with self.client.stream(
                    service, endpoint, request, Any, metadata=metadata, timeout=timeout
                ) as stream:
                    async for item in stream:
                        await out.message(msgspec.json.encode(item))
            except MicroError as error:
                failed = error

        await until_disconnect(receive, relay)
        await out.finish(failed)


async def _send_json(send: Send, data: Any, cors: list[tuple[str, str]]) -> None:
    # One line with its newline, for curl users.
    await send_response(send, 200, json.dumps(data).encode() + b"\n", "application/json", cors)


def _route(path: str, headers: list[tuple[str, str]]) -> tuple[str, str]:
    """The service and endpoint a call names, by path or ``Micro-Endpoint`` header."""
    parts = [p for p in path.split("/") if p]
    header = next((v for k, v in headers if k == "micro-endpoint"), "")
    if header and len(parts) == 1:
        return parts[0], header
    if not header and len(parts) == 2 and "." in parts[1]:
        return parts[0], parts[1]
    if not header and len(parts) == 3:
        return parts[0], f"{parts[1]}.{parts[2]}"
    raise NotFound(
        f"no route for POST {path}: use POST /{{service}}/{{Handler.Method}}, "
        "/{service}/{Handler}/{Method}, or /{service} with a Micro-Endpoint header",
        id="micro.gateway",
    )
