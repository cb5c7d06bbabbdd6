"""What the drivers need from the server: the dispatcher protocol.

The HTTP/2 and HTTP/1.1 drivers parse requests and write answers; everything
a call means (which endpoint, its middleware, handler and codec, calls in
flight) is the dispatcher's. :class:`Dispatcher` is all a driver may ask of
it, so the protocol layer can be read and tested without the server
(:class:`micro.server.Server` satisfies it).

A call's deadline (its ``grpc-timeout``) becomes a cancel scope, and a scope
that ran out becomes :class:`~micro.errors.Timeout` (``DEADLINE_EXCEEDED``)
here only, in :func:`within_deadline`, for every driver and call kind.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio

from ..errors import MicroError, Timeout
from .primitives import Scope, cancel_scope

if TYPE_CHECKING:
    from .calls import RequestHead

__all__ = [
    "Dispatcher",
    "Kind",
    "Limits",
    "MessageIO",
    "OneRequest",
    "RouteGuard",
    "Target",
    "WebResponse",
    "WebRoute",
    "deadline_exceeded",
    "within_deadline",
]

T = TypeVar("T")


class Kind(StrEnum):
    """The four kinds of call, by which side sends a stream of messages."""

    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"
    BIDI_STREAM = "bidi_stream"

    @property
    def streams_requests(self) -> bool:
        return self in (Kind.CLIENT_STREAM, Kind.BIDI_STREAM)

    @property
    def streams_responses(self) -> bool:
        return self in (Kind.SERVER_STREAM, Kind.BIDI_STREAM)


@dataclass(frozen=True, slots=True)
class WebResponse:
    """The answer of a plain GET route (health, metrics, debug pages)."""

    status: int
    content_type: str
    body: bytes


#: A GET route on the service's listener: ``async def route() -> WebResponse``.
WebRoute = Callable[[], Awaitable[WebResponse]]
#: Checks a GET route's path and request headers before the route runs (auth);
#: raises MicroError to answer with instead.
RouteGuard = Callable[[str, Mapping[str, str]], None]


class MessageIO(Protocol):
    """What a transport offers a streaming call: whole messages in and out."""

    async def receive_message(self) -> bytes | memoryview | None:
        """The next request message, or None once the peer has finished sending."""
        ...

    async def send_message(self, data: bytes) -> None:
        """Send one response message, waiting for flow control as needed."""
        ...


class OneRequest:
    """A streaming call made as one plain request (a :class:`MessageIO`).

    Its one request message is ``body``; each response message is handed
    to ``emit`` (which sends it as a line of JSON, say).
    """

    __slots__ = ("_body", "_emit")

    def __init__(self, body: bytes, emit: Callable[[bytes], Awaitable[None]]) -> None:
        self._body: bytes | None = body
        self._emit = emit

    async def receive_message(self) -> bytes | None:
        body, self._body = self._body, None
        return body

    async def send_message(self, data: bytes) -> None:
        await self._emit(data)


class Target(Protocol):
    """An endpoint, as much of it as a driver looks at."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> Kind: ...


class Limits(Protocol):
    """The limits a driver enforces on the wire."""

    @property
    def max_message_size(self) -> int: ...

    @property
    def max_concurrent_streams(self) -> int: ...

    @property
    def max_header_list_size(self) -> int: ...


E = TypeVar("E", bound=Target)


class Dispatcher(Protocol[E]):
    """Runs calls for the drivers; raises :class:`~micro.errors.MicroError` for failed calls."""

    @property
    def name(self) -> str:
        """The service's name: the ``id`` of errors the driver makes itself."""
        ...

    @property
    def options(self) -> Limits: ...

    @property
    def routes(self) -> Mapping[str, WebRoute]:
        """Plain GET routes served beside the calls, by path."""
        ...

    @property
    def route_guard(self) -> RouteGuard | None: ...

    def lookup(self, name: str, metadata: Mapping[str, str] | None = None) -> E:
        """The endpoint called ``name``; raises NotFound (or the guard's refusal)."""
        ...

    def streams_as_lines(self, head: RequestHead, ep: E) -> bool:
        """Whether a plain call to ``ep`` is answered as JSON lines (raises 415 if unservable)."""
        ...

    async def call_unary(self, head: RequestHead, ep: E, body: bytes | memoryview) -> bytes: ...

    async def call_stream(self, head: RequestHead, ep: E, io: MessageIO) -> None: ...

    def call_started(self) -> None:
        """Count a call as in flight (a draining server waits for it)."""
        ...

    def call_finished(self) -> None: ...

    def internal_error(self, endpoint: str, exc: BaseException) -> MicroError:
        """Log an unexpected exception; the safe error to answer with."""
        ...


def deadline_exceeded(service: str) -> MicroError:
    """The error of a call whose deadline passed (gRPC ``DEADLINE_EXCEEDED``)."""
    return Timeout("deadline exceeded", id=service, grpc_status=4)


async def within_deadline(
    call: Awaitable[T],
    timeout: float | None,
    service: str,
    scope: Scope | None = None,
) -> tuple[T | None, MicroError | None]:
    """Await ``call`` under a deadline ``timeout`` seconds away: (result, None) or (None, error).

    A deadline that passes cancels the call and comes back as
    :func:`deadline_exceeded`. ``scope``, if given, is the scope the call
    runs in (a driver cancels it when the peer resets the stream; it must
    then ignore the result). With neither a deadline nor a scope, no scope
    is made at all.
    """
    if scope is None:
        if timeout is None:
            try:
                return await call, None
            except MicroError as exc:
                return None, exc
        scope = cancel_scope()
    if timeout is not None:
        scope.deadline = anyio.current_time() + timeout if timeout < math.inf else math.inf
    with scope:
        try:
            return await call, None
        except MicroError as exc:
            return None, exc
    return None, deadline_exceeded(service)
