"""The client: call endpoints of other services by name or by address.

``call`` resolves the service's nodes through the registry, picks one with
the selector, and sends the request on that node's pooled HTTP/2 connection
as a gRPC call (``application/grpc+json`` by default, ``application/grpc``
when the request is a protobuf message) or, with a plain content type such
as ``application/json``, as a plain HTTP/2 call. Metadata and the deadline of
the call being handled (if any) are carried on automatically.

A client owns tasks (each connection's reader and writer), so it is used as
an async context manager; a service opens its own client for its lifetime.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar, overload

import anyio
import anyio.abc

from .. import context
from ..codec import Codec, parse_content_type
from ..codec._typed import is_protobuf
from ..errors import BadRequest, MicroError, Timeout, Unavailable, from_grpc
from ..registry.base import Registry
from ..selector.base import RandomSelector, Selector
from ..server.server import DEFAULT_MAX_MESSAGE_SIZE
from ..transport.framing import MessageDecoder, encode_message
from ..transport.h2_client import ResponseParts
from ..transport.headers import metadata_to_headers, path_from_endpoint
from ..transport.timeouts import format_grpc_timeout
from .pool import ConnectionPool
from .status import raise_for_grpc_status
from .stream import ClientStream

__all__ = ["Client", "ClientRequest", "ClientMiddleware", "ClientCallNext"]

T = TypeVar("T")

DEFAULT_CONTENT_TYPE = "application/grpc+json"

#: ``stream()`` without a request: the caller sends its own messages
_NO_REQUEST: Any = object()


@dataclass(slots=True)
class ClientRequest:
    """An outgoing call as client middleware sees it."""

    service: str
    endpoint: str
    body: Any
    response_type: Any
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = DEFAULT_CONTENT_TYPE
    timeout: float | None = None
    address: str | None = None


ClientCallNext = Callable[[ClientRequest], Awaitable[Any]]
ClientMiddleware = Callable[[ClientRequest, ClientCallNext], Awaitable[Any]]


class Client:
    """Calls services; use as ``async with Client() as client:``."""

    def __init__(
        self,
        *,
        registry: Registry | None = None,
        selector: Selector | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        timeout: float | None = 30.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        middleware: list[ClientMiddleware] | None = None,
    ) -> None:
        if registry is None:
            from ..registry.memory import default_registry

            registry = default_registry()
        parse_content_type(content_type)  # fail early on a typo
        self.registry = registry
        self.selector = selector or RandomSelector()
        self.content_type = content_type
        self.timeout = timeout
        self.max_message_size = max_message_size
        self._middleware: list[ClientMiddleware] = list(middleware or [])
        self._chain: ClientCallNext | None = None
        self._pool: ConnectionPool | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Client:
        if self._stack is not None:
            raise RuntimeError("this client is already open")
        stack = contextlib.AsyncExitStack()
        tg = await stack.enter_async_context(anyio.create_task_group())
        self._pool = ConnectionPool(tg, max_message_size=self.max_message_size)
        stack.callback(self._close_pool)
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        assert stack is not None
        return await stack.__aexit__(exc_type, exc, tb)

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def use(self, middleware: ClientMiddleware) -> None:
        """Add a middleware; the first added is the outermost."""
        self._middleware.append(middleware)
        self._chain = None

    # -- calls ---------------------------------------------------------------

    @overload
    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any,
        response_type: type[T],
        *,
        timeout: float | None = ...,
        metadata: Mapping[str, str] | None = ...,
        address: str | None = ...,
        content_type: str | None = ...,
    ) -> T: ...

    @overload
    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any,
        response_type: Any = ...,
        *,
        timeout: float | None = ...,
        metadata: Mapping[str, str] | None = ...,
        address: str | None = ...,
        content_type: str | None = ...,
    ) -> Any: ...

    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any,
        response_type: Any = Any,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        address: str | None = None,
        content_type: str | None = None,
    ) -> Any:
        """Call ``endpoint`` (``Handler.Method``) of ``service`` and return the decoded response.

        ``timeout`` (seconds) bounds the call; the deadline of the call being
        handled, if any, bounds it too. ``address`` skips discovery. Raises
        :class:`~micro.errors.MicroError` subclasses: the server's error as
        it sent it, Timeout, or Unavailable when no node could be reached.
        """
        if content_type is None:
            content_type = "application/grpc" if is_protobuf(type(request)) else self.content_type
        md = dict(context.metadata())
        if metadata:
            md.update({k.lower(): v for k, v in metadata.items()})
        req = ClientRequest(
            service=service,
            endpoint=endpoint,
            body=request,
            response_type=response_type,
            metadata=md,
            content_type=content_type,
            timeout=timeout if timeout is not None else self.timeout,
            address=address,
        )
        chain = self._chain
        if chain is None:
            chain = self._invoke
            for mw in reversed(self._middleware):
                chain = _bind(mw, chain)
            self._chain = chain
        return await chain(req)

    async def _invoke(self, req: ClientRequest) -> Any:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the client is not open: use `async with Client(...) as client:`")
        grpc, codec = parse_content_type(req.content_type)
        try:
            payload = codec.encode(req.body)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"cannot encode the request as {codec.name}: {exc}") from None
        if grpc:
            payload = encode_message(payload)
        deadline = _deadline(req.timeout)
        with anyio.CancelScope(deadline=_or_inf(deadline)) as scope:
            address = req.address or await self._resolve(req.service)
            conn = await pool.get(address)
            headers = _request_headers(req, address, grpc, codec, deadline)
            parts = await conn.request(headers, payload)
        if scope.cancelled_caught:
            raise Timeout(
                f"call to {req.service} {req.endpoint} timed out", id=req.service, grpc_status=4
            )
        return _decode_response(parts, grpc, codec, req, self.max_message_size)

    @contextlib.asynccontextmanager
    async def stream(
        self,
        service: str,
        endpoint: str,
        request: Any = _NO_REQUEST,
        response_type: Any = Any,
        *,
        timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
        address: str | None = None,
        content_type: str | None = None,
    ) -> AsyncIterator[ClientStream[Any]]:
        """Open a streaming call (client, server or bidirectional streaming).

        With ``request``, that one message is sent and the sending side closed
        (server streaming). ``timeout`` bounds the whole block (streams have no
        default timeout; the deadline of the call being handled still applies);
        past it the stream is reset and :class:`~micro.errors.Timeout` raised.
        Leaving the block early resets the stream and cancels the handler.
        """
        pool = self._pool
        if pool is None:
            raise RuntimeError("the client is not open: use `async with Client(...) as client:`")
        if content_type is None:
            protobuf = is_protobuf(response_type) or (
                request is not _NO_REQUEST and is_protobuf(type(request))
            )
            content_type = "application/grpc" if protobuf else self.content_type
        grpc, codec = parse_content_type(content_type)
        if not grpc:
            raise BadRequest(f"streaming calls use gRPC; {content_type!r} is not a gRPC type")
        md = dict(context.metadata())
        if metadata:
            md.update({k.lower(): v for k, v in metadata.items()})
        req = ClientRequest(
            service, endpoint, None, response_type, md, content_type, timeout, address
        )
        deadline = _deadline(timeout)
        with anyio.CancelScope(deadline=_or_inf(deadline)) as scope:
            target = address or await self._resolve(service)
            conn = await pool.get(target)
            sid, parts = await conn.open_stream(
                _request_headers(req, target, True, codec, deadline)
            )
            try:
                s: ClientStream[Any] = ClientStream(
                    conn, sid, parts, codec, response_type, service, endpoint
                )
                if request is not _NO_REQUEST:
                    await s.send(request)
                    await s.close_send()
                yield s
            finally:
                conn.close_stream(sid, parts)
        if scope.cancelled_caught:
            raise Timeout(f"stream {service} {endpoint} timed out", id=service, grpc_status=4)

    async def _resolve(self, service: str) -> str:
        records = await self.registry.get_service(service)
        nodes = [node for record in records for node in record.nodes]
        if not nodes:
            raise Unavailable(f"service {service} has no nodes", id=service)
        return self.selector.select(service, nodes).address


def _or_inf(deadline: float | None) -> float:
    return deadline if deadline is not None else float("inf")


def _request_headers(
    req: ClientRequest, address: str, grpc: bool, codec: Codec, deadline: float | None
) -> list[tuple[str, str]]:
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path_from_endpoint(req.endpoint)),
        (":authority", address),
        ("content-type", req.content_type),
    ]
    if grpc:
        headers.append(("te", "trailers"))
    else:
        headers.append(("accept", codec.content_type))
    if deadline is not None:
        headers.append(("grpc-timeout", format_grpc_timeout(deadline - anyio.current_time())))
    headers.extend(metadata_to_headers(req.metadata))
    return headers


def _deadline(timeout: float | None) -> float | None:
    inherited = context.deadline()
    mine = None if timeout is None else anyio.current_time() + timeout
    if inherited is None:
        return mine
    return inherited if mine is None else min(mine, inherited)


def _decode_response(
    parts: ResponseParts, grpc: bool, codec: Codec, req: ClientRequest, max_size: int
) -> Any:
    if not grpc:
        status = parts.header(":status", "0")
        code = int(status) if status.isdigit() else 502
        if code != 200:
            raise MicroError.parse(parts.body, code=code)
        return codec.decode(parts.body, req.response_type)
    raise_for_grpc_status(parts, req.service)
    decoder = MessageDecoder(max_size)
    messages = decoder.feed(parts.body)
    if len(messages) != 1 or decoder.pending:
        raise from_grpc(
            13, f"{req.service} sent {len(messages)} messages for a unary call", id=req.service
        )
    return codec.decode(messages[0], req.response_type)


def _bind(mw: ClientMiddleware, nxt: ClientCallNext) -> ClientCallNext:
    async def call(req: ClientRequest) -> Any:
        return await mw(req, nxt)

    return call
