"""The server core: what happens to a call between the wire and the handler.

Drivers (HTTP/2, HTTP/1.1) parse a request head, collect the body and hand it
to :meth:`Server.call_unary`, which decodes the request into the endpoint's
type, runs the middleware chain and the handler with the call's metadata and
deadline in context, and encodes the response. Every failure comes out as a
:class:`~micro.errors.MicroError`; a handler's own exception becomes a 500
with a safe message (the traceback is logged, never sent).

The server also counts calls in flight, so a draining service can wait for
them before it closes its listener.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import msgspec

from .. import context
from ..codec import Codec
from ..errors import (
    BadRequest,
    InternalServerError,
    MicroError,
    NotFound,
    UnsupportedMediaType,
)
from ..transport.calls import RequestHead
from ..transport.dispatch import (
    OneRequest,
    RouteGuard,
    WebResponse,
    WebRoute,
    within_deadline,
)
from .endpoint import Endpoint, Kind
from .router import Router
from .stream import MessageIO, Stream

__all__ = [
    "Server",
    "ServerOptions",
    "Request",
    "Middleware",
    "CallNext",
    "WebResponse",
    "WebRoute",
    "RouteGuard",
    "CallGuard",
]

log = logging.getLogger("micro.server")

#: 4 MiB, gRPC's default receive limit, so micro and grpcio peers agree.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerOptions:
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: concurrent HTTP/2 streams a client may open on one connection
    max_concurrent_streams: int = 1000
    #: cap on the size of a request's header list
    max_header_list_size: int = 64 * 1024


@dataclass(slots=True)
class Request:
    """A call as middleware sees it; ``body`` is the decoded request."""

    service: str
    endpoint: str
    metadata: Mapping[str, str]
    body: Any
    content_type: str
    kind: Kind = Kind.UNARY


CallNext = Callable[[Request], Awaitable[Any]]
Middleware = Callable[[Request, CallNext], Awaitable[Any]]


#: Checks a call (endpoint name, metadata) before its request is decoded (auth);
#: raises MicroError to answer with instead, and may take entries out of the metadata.
CallGuard = Callable[[str, dict[str, str]], None]


class CallObserver(Protocol):
    """Sees every call the server runs (metrics, traces, request logs)."""

    def server_call(self, endpoint: Endpoint, metadata: Mapping[str, str]) -> ObservedCall: ...


class ObservedCall(Protocol):
    def end(self, error: BaseException | None) -> None: ...


class Server:
    """Routes calls to endpoints through the middleware chain."""

    def __init__(
        self,
        name: str,
        options: ServerOptions | None = None,
        *,
        call_guard: CallGuard | None = None,
        route_guard: RouteGuard | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.name = name
        self.options = options or ServerOptions()
        self.router = Router()
        self._middleware: list[Middleware] = []
        self._chains: dict[str, CallNext] = {}
        self.inflight = 0
        self._idle: anyio.Event | None = None
        self.draining = False
        #: plain GET routes served on the listener beside the calls: path -> route
        self.routes: dict[str, WebRoute] = {}
        #: checks a GET route's request before it runs (authentication)
        self.route_guard: RouteGuard | None = route_guard
        #: checks a call before it is decoded and before any middleware (authentication)
        self.call_guard: CallGuard | None = call_guard
        #: told of every call's start and end (metrics, spans, request logs)
        self.observer: CallObserver | None = observer

    # -- configuration -------------------------------------------------------

    def handle(self, handler: object, *, name: str | None = None) -> list[Endpoint]:
        eps = self.router.add(handler, name=name)
        self._chains.clear()
        return eps

    def use(self, middleware: Middleware) -> None:
        """Add a middleware; the first added is the outermost."""
        self._middleware.append(middleware)
        self._chains.clear()

    # -- dispatch ------------------------------------------------------------

    def lookup(self, name: str, metadata: Mapping[str, str] | None = None) -> Endpoint:
        """The endpoint called ``name``; raises NotFound (UNIMPLEMENTED) if there is none.

        With a call guard, a caller it would refuse is refused first, so an unknown
        endpoint tells only callers that may call it that it does not exist.
        """
        ep = self.router.lookup(name)
        if ep is None:
            if self.call_guard is not None and metadata is not None:
                self.call_guard(name, dict(metadata))
            # UNIMPLEMENTED is what gRPC clients expect for an unknown method.
            raise NotFound(f"unknown endpoint {name}", id=self.name, grpc_status=12)
        return ep

    def _chain(self, ep: Endpoint) -> CallNext:
        chain = self._chains.get(ep.name)
        if chain is None:
            handler = ep.handler

            async def innermost(req: Request) -> Any:
                result = handler(req.body)
                if inspect.isawaitable(result):
                    result = await result
                return result

            chain = innermost
            for mw in reversed(self._middleware):
                chain = _bind(mw, chain)
            self._chains[ep.name] = chain
        return chain

    async def call_unary(self, head: RequestHead, ep: Endpoint, body: bytes | memoryview) -> bytes:
        """Decode, run and encode one unary call; raises MicroError."""
        observer = self.observer
        if observer is None:
            return await self._call_unary(head, ep, body)
        call = observer.server_call(ep, head.metadata)
        try:
            result = await self._call_unary(head, ep, body)
        except BaseException as exc:
            call.end(exc)
            raise
        call.end(None)
        return result

    async def call_stream(self, head: RequestHead, ep: Endpoint, io: MessageIO) -> None:
        """Run one streaming call over ``io``; raises MicroError."""
        observer = self.observer
        if observer is None:
            return await self._call_stream(head, ep, io)
        call = observer.server_call(ep, head.metadata)
        try:
            await self._call_stream(head, ep, io)
        except BaseException as exc:
            call.end(exc)
            raise
        call.end(None)

    async def _call_unary(self, head: RequestHead, ep: Endpoint, body: bytes | memoryview) -> bytes:
        if self.call_guard is not None:
            self.call_guard(ep.name, head.metadata)
        codec: Codec = head.codec
        req = codec.decode(body, ep.request_type)
        context._set(head.metadata, _deadline(head.timeout))
        request = Request(self.name, ep.name, head.metadata, req, head.content_type)
        try:
            result = await self._chain(ep)(request)
        except MicroError as exc:
            if not exc.id:
                exc.id = self.name
            raise
        except Exception as exc:
            raise self.internal_error(ep.name, exc) from None
        try:
            data = codec.encode(result)
        except (TypeError, ValueError) as exc:
            raise self.internal_error(ep.name, exc) from None
        if not head.grpc and codec.name == "json":
            # Plain JSON answers are read by people (curl): space them as json.dumps
            # does, and end the line so a shell prompt starts on the next one.
            data = msgspec.json.format(data, indent=0) + b"\n"
        return data

    async def _call_stream(self, head: RequestHead, ep: Endpoint, io: MessageIO) -> None:
        if self.call_guard is not None:
            self.call_guard(ep.name, head.metadata)
        codec: Codec = head.codec
        context._set(head.metadata, _deadline(head.timeout))
        kind = ep.kind
        body: Any
        requests: AsyncGenerator[Any, None] | None = None
        if ep.explicit_stream:
            body = Stream(io, codec, ep.request_type, head.metadata, ep.name)
        elif kind.streams_requests:
            requests = _requests(io, codec, ep.request_type)
            body = requests
        else:
            first = await io.receive_message()
            if first is None:
                raise BadRequest(f"{ep.name} takes one request message, got none")
            if await io.receive_message() is not None:
                raise BadRequest(f"{ep.name} takes exactly one request message")
            body = codec.decode(first, ep.request_type)
        request = Request(self.name, ep.name, head.metadata, body, head.content_type, kind)
        try:
            result = await self._chain(ep)(request)
            if ep.explicit_stream:
                return
            if kind.streams_responses:
                if not hasattr(result, "__aiter__"):
                    raise TypeError(f"{ep.name} must return an async iterator")
                iterator = aiter(result)
                async with contextlib.AsyncExitStack() as stack:
                    if hasattr(iterator, "aclose"):
                        stack.push_async_callback(iterator.aclose)
                    async for item in iterator:
                        await io.send_message(codec.encode(item))
            else:
                await io.send_message(codec.encode(result))
        except MicroError as exc:
            if not exc.id:
                exc.id = self.name
            raise
        except Exception as exc:
            raise self.internal_error(ep.name, exc) from None
        finally:
            if requests is not None:
                with anyio.CancelScope(shield=True):
                    await requests.aclose()

    async def call_unary_within_deadline(
        self, head: RequestHead, ep: Endpoint, body: bytes | memoryview
    ) -> tuple[bytes, MicroError | None]:
        """Run one unary call under its ``grpc-timeout``: (response, None) or (b"", error).

        For drivers that answer plain HTTP calls; the call counts as in flight
        until the driver calls :meth:`call_finished`, after its answer is sent.
        """
        self.call_started()
        result, error = await within_deadline(
            self.call_unary(head, ep, body), head.timeout, self.name
        )
        return result or b"", error

    def streams_as_lines(self, head: RequestHead, ep: Endpoint) -> bool:
        """Whether a plain (not gRPC) call to ``ep`` is answered as a stream of JSON lines.

        Server-streaming endpoints are, for a JSON request; raises
        UnsupportedMediaType (415) for other streaming calls made without gRPC.
        """
        if head.grpc or ep.kind is Kind.UNARY:
            return False
        if ep.kind is not Kind.SERVER_STREAM or ep.explicit_stream:
            raise UnsupportedMediaType(
                f"{ep.name} streams requests: call it over gRPC "
                "(application/grpc, application/grpc+json or application/grpc+msgpack)"
            )
        if head.codec.name != "json":
            raise UnsupportedMediaType(
                f"{ep.name} streams its responses as JSON lines: send a JSON request, "
                "or call it over gRPC"
            )
        return True

    async def call_lines_within_deadline(
        self, head: RequestHead, ep: Endpoint, body: bytes, emit: Callable[[bytes], Awaitable[None]]
    ) -> MicroError | None:
        """Run a server-streaming call for a plain request, under its deadline.

        ``body`` is the one request; ``emit`` is awaited with each response
        message, encoded as one line of JSON. Returns the error that ended
        the call, if any. For drivers that answer plain HTTP calls; the call
        counts as in flight until the driver calls :meth:`call_finished`.
        """
        self.call_started()
        _, error = await within_deadline(
            self.call_stream(head, ep, OneRequest(body, emit)), head.timeout, self.name
        )
        return error

    def internal_error(self, endpoint: str, exc: BaseException) -> MicroError:
        log.error("handler %s failed", endpoint, exc_info=exc)
        return InternalServerError(f"internal error in {endpoint}", id=self.name)

    # -- in-flight accounting ------------------------------------------------

    def call_started(self) -> None:
        self.inflight += 1

    def call_finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no call is in flight."""
        while self.inflight:
            self._idle = anyio.Event()
            await self._idle.wait()


def _bind(mw: Middleware, nxt: CallNext) -> CallNext:
    async def call(req: Request) -> Any:
        return await mw(req, nxt)

    return call


async def _requests(io: MessageIO, codec: Codec, into: Any) -> AsyncGenerator[Any, None]:
    """The request messages of a client- or bidi-streaming call, decoded."""
    while True:
        data = await io.receive_message()
        if data is None:
            return
        yield codec.decode(data, into)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else anyio.current_time() + timeout
