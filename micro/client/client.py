"""The client: call endpoints of other services by name or by address.

``call`` resolves the service's nodes through the registry, picks one with
the selector, and sends the request on that node's pooled HTTP/2 connection
as a gRPC call (``application/grpc+json`` by default, ``application/grpc``
when the request is a protobuf message) or, with a plain content type such
as ``application/json``, as a plain HTTP/2 call. Metadata and the deadline of
the call being handled (if any) are carried on automatically.

A client owns tasks (each connection's reader and writer), so it is used as
an async context manager; a service opens its own client for its lifetime.

One module, past the usual size: unary calls, streams and publishing share
one path (choosing a node, retrying where safe, the deadline, telemetry,
building the request and reading the answer), and the connection pool and
stream wrapper it uses already live beside it (``pool.py``, ``stream.py``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeVar, overload

import anyio
import anyio.abc
import tenacity

from .. import context, plugins
from ..allocator import tune_allocator
from ..codec import Codec, parse_content_type
from ..codec._typed import is_protobuf
from ..errors import BadRequest, MicroError, Timeout, Unavailable, from_grpc
from ..message import Message, encode
from ..observability.telemetry import Telemetry
from ..registry import resolve_registry
from ..registry.base import Node, Registry, ServiceRecord
from ..registry.cache import RegistryCache
from ..selector.base import Selector
from ..selector.health import NodeHealth
from ..server.server import DEFAULT_MAX_MESSAGE_SIZE
from ..supervisor import Supervisor, backoff_delay
from ..tls import TLSConfig
from ..transport.framing import ACCEPT_ENCODING, MessageDecoder, message_parts
from ..transport.h2_client import H2ClientConnection, ResponseParts, StreamParts
from ..transport.headers import metadata_to_headers, path_from_endpoint
from ..transport.primitives import cancel_scope
from ..transport.timeouts import format_grpc_timeout
from .pool import ConnectionPool
from .status import raise_for_grpc_status
from .stream import ClientStream

log = logging.getLogger("micro.client")

__all__ = ["Client", "ClientRequest", "ClientMiddleware", "ClientCallNext", "Publisher"]

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
    #: only nodes of this version
    version: str | None = None
    #: only nodes whose (node or service) metadata has all these pairs
    node_metadata: Mapping[str, str] | None = None
    #: affinity key for hashing selectors (defaults to their metadata key's value)
    key: str | None = None
    #: safe to run twice: retried on any node failure, not only unprocessed ones
    idempotent: bool | None = None
    retries: int | None = None
    #: bound on each attempt (None: the client's); the call's deadline bounds them all
    attempt_timeout: float | None = None


class Publisher(Protocol):
    """Where :meth:`Client.publish` sends messages: any broker (:class:`micro.broker.Broker`)."""

    async def publish(self, message: Message) -> None: ...


ClientCallNext = Callable[[ClientRequest], Awaitable[Any]]
ClientMiddleware = Callable[[ClientRequest, ClientCallNext], Awaitable[Any]]


class Client:
    """Calls services; use as ``async with Client() as client:``."""

    def __init__(
        self,
        *,
        registry: Registry | str | None = None,
        selector: Selector | str | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        timeout: float | None = 30.0,
        retries: int = 2,
        attempt_timeout: float | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        middleware: list[ClientMiddleware] | None = None,
        tls: TLSConfig | ssl.SSLContext | None = None,
        telemetry: Telemetry | None = None,
        credentials: Callable[[], Awaitable[Mapping[str, str]]] | None = None,
    ) -> None:
        parse_content_type(content_type)  # fail early on a typo
        if isinstance(tls, TLSConfig):
            self._server_name = tls.server_name
            self._verify_service = tls.verify_service
            tls = tls.client_context()
        else:
            self._server_name = None
            self._verify_service = False
        #: dial nodes over TLS with this context (None: h2c)
        self.ssl_context = tls
        self._scheme = "http" if tls is None else "https"
        #: per-call credentials: metadata (``authorization``) added to every call
        #: and stream that does not set it itself
        self.credentials: Callable[[], Awaitable[Mapping[str, str]]] | None = credentials
        #: metrics and spans of the calls made (a service shares its own)
        self.telemetry = telemetry if telemetry is not None else Telemetry("")
        self.registry = resolve_registry(registry)
        #: a Selector, or a name (``random``, ``roundrobin``, ``leastinflight``,
        #: ``hash:<key>``, a plugin's) chosen like any backend
        self.selector: Selector = plugins.resolve("selector", selector or "random")
        self.health = NodeHealth()
        self.content_type = content_type
        self.timeout = timeout
        self.retries = retries
        #: bound on each attempt of a call, so a hung node leaves time to try another
        self.attempt_timeout = attempt_timeout
        self.max_message_size = max_message_size
        self._middleware: list[ClientMiddleware] = list(middleware or [])
        self._chain: ClientCallNext | None = None
        self._pool: ConnectionPool | None = None
        self._cache: RegistryCache | None = None
        self._supervisor: Supervisor | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._registry_open = False
        self._registry_lock: anyio.Lock | None = None
        #: where ``publish`` sends (a service sets its own; otherwise HTTP, publish-only)
        self.broker: Publisher | None = None

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Client:
        if self._stack is not None:
            raise RuntimeError("this client is already open")
        tune_allocator()  # once per process: large messages without page faults
        stack = contextlib.AsyncExitStack()
        tg = await stack.enter_async_context(anyio.create_task_group())
        # On exit: stop registry watchers and connections, then close the pool.
        stack.callback(self._close_pool)
        stack.callback(tg.cancel_scope.cancel)
        self._pool = ConnectionPool(
            tg,
            max_message_size=self.max_message_size,
            ssl_context=self.ssl_context,
            server_name=self._server_name,
            verify_service=self._verify_service,
        )
        # Registry watchers are supervised parts: here the client's own, in a service
        # the service's (see supervised_by).
        self._supervisor = Supervisor(tg)
        self._cache = RegistryCache(self.registry, self._supervisor)
        self.telemetry.watch_cache(self._cache)
        self._registry_lock = anyio.Lock()
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
        try:
            return await stack.__aexit__(exc_type, exc, tb)
        finally:
            self._cache = None
            if self._registry_open:
                self._registry_open = False
                with anyio.CancelScope(shield=True):
                    await self.registry.__aexit__(None, None, None)

    @contextlib.contextmanager
    def supervised_by(self, supervisor: Supervisor) -> Iterator[None]:
        """Run the registry watchers that lookups start inside the block under
        ``supervisor`` (a service's): they restart with its backoff, a watcher that
        keeps failing stops the service, and its debug stats list them."""
        if self._cache is None:
            raise RuntimeError("the client is not open: use `async with Client(...) as client:`")
        with self._cache.supervised_by(supervisor):
            yield

    def parts(self) -> dict[str, dict[str, Any]]:
        """The client's own supervised parts (registry watchers outside a service)."""
        return {} if self._supervisor is None else self._supervisor.stats()

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def _open_registry(self) -> RegistryCache:
        """Enter the registry on first use, so clients that only dial addresses never do."""
        cache = self._cache
        if cache is None:
            raise RuntimeError("the client is not open: use `async with Client(...) as client:`")
        if not self._registry_open:
            assert self._registry_lock is not None
            async with self._registry_lock:
                if not self._registry_open:
                    await self.registry.__aenter__()
                    self._registry_open = True
        return cache

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
        version: str | None = ...,
        node_metadata: Mapping[str, str] | None = ...,
        key: str | None = ...,
        idempotent: bool | None = ...,
        retries: int | None = ...,
        attempt_timeout: float | None = ...,
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
        version: str | None = ...,
        node_metadata: Mapping[str, str] | None = ...,
        key: str | None = ...,
        idempotent: bool | None = ...,
        retries: int | None = ...,
        attempt_timeout: float | None = ...,
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
        version: str | None = None,
        node_metadata: Mapping[str, str] | None = None,
        key: str | None = None,
        idempotent: bool | None = None,
        retries: int | None = None,
        attempt_timeout: float | None = None,
    ) -> Any:
        """Call ``endpoint`` (``Handler.Method``) of ``service`` and return the decoded response.

        ``timeout`` (seconds) bounds the call; the deadline of the call being
        handled, if any, bounds it too. ``address`` skips discovery;
        ``version`` calls only nodes of that version; ``key`` is the affinity
        key for a hashing selector. A call that fails on a node without
        reaching its handler is retried on another node (``retries`` times,
        default the client's); an ``idempotent`` call (or an endpoint the
        service declared idempotent) is retried after any node failure.
        ``attempt_timeout`` bounds each attempt (default the client's): an
        attempt past it counts as a node failure, retried if idempotent, else
        raised as Timeout.

        Raises :class:`~micro.errors.MicroError` subclasses: the server's
        error as it sent it, Timeout, or Unavailable when no node could take it.
        """
        if content_type is None:
            content_type = "application/grpc" if is_protobuf(type(request)) else self.content_type
        md = dict(context.metadata())
        if metadata:
            md.update({k.lower(): v for k, v in metadata.items()})
        observed = self.telemetry.client_call(service, endpoint, md)
        req = ClientRequest(
            service=service,
            endpoint=endpoint,
            body=request,
            response_type=response_type,
            metadata=md,
            content_type=content_type,
            timeout=timeout if timeout is not None else self.timeout,
            address=address,
            version=version,
            node_metadata=node_metadata,
            key=key,
            idempotent=idempotent,
            retries=retries,
            attempt_timeout=attempt_timeout,
        )
        chain = self._chain
        if chain is None:
            chain = self._invoke
            for mw in reversed(self._middleware):
                chain = _bind(mw, chain)
            self._chain = chain
        try:
            result = await chain(req)
        except BaseException as exc:
            observed.end(exc)
            raise
        observed.end(None)
        return result

    async def _invoke(self, req: ClientRequest) -> Any:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the client is not open: use `async with Client(...) as client:`")
        grpc, codec = parse_content_type(req.content_type)
        if self.credentials is not None and "authorization" not in req.metadata:
            req.metadata.update(await self.credentials())
        try:
            payload = codec.encode(req.body)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"cannot encode the request as {codec.name}: {exc}") from None
        body = message_parts(payload) if grpc else (payload,)
        deadline = _deadline(req.timeout)

        async def attempt(node: Node) -> Any:
            conn = await pool.get(node.address, None if req.address else req.service)
            headers = _request_headers(req, node.address, grpc, codec, deadline, self._scheme)
            parts = await conn.request(headers, body)
            return _decode_response(parts, grpc, codec, req, self.max_message_size)

        with cancel_scope(_or_inf(deadline)):
            return await self._on_nodes(req, attempt)
        # Only reached when the deadline cancelled the call.
        raise Timeout(
            f"call to {req.service} {req.endpoint} timed out", id=req.service, grpc_status=4
        )

    async def _on_nodes(self, req: ClientRequest, attempt: Callable[[Node], Awaitable[T]]) -> T:
        """Run ``attempt`` on a selected node, retrying on others when that is safe."""
        if req.address:
            return await attempt(Node(id=req.address, address=req.address))
        records = await self.lookup(req.service)
        idempotent = req.idempotent
        if idempotent is None:
            idempotent = _declared_idempotent(records, req.endpoint)
        retries = self.retries if req.retries is None else req.retries
        key = req.key
        metadata_key = getattr(self.selector, "metadata_key", None)
        if key is None and metadata_key:
            key = req.metadata.get(metadata_key)
        tried: set[str] = set()
        failures = 0
        while True:
            nodes = _candidates(records, req.version, req.node_metadata)
            if not nodes:
                wanted = [f"version {req.version}"] if req.version else []
                wanted += [f"{k}={v}" for k, v in (req.node_metadata or {}).items()]
                raise Unavailable(
                    f"service {req.service} has no nodes"
                    + (f" with {', '.join(wanted)}" if wanted else ""),
                    id=req.service,
                )
            fresh = [n for n in nodes if n.address not in tried] or nodes
            node = self.selector.select(req.service, self.health.available(fresh), key)
            tried.add(node.address)
            self.selector.started(node)
            limit = self.attempt_timeout if req.attempt_timeout is None else req.attempt_timeout
            try:
                # Each attempt in its own scope, inside the call's deadline.
                with cancel_scope(
                    math.inf if limit is None else anyio.current_time() + limit
                ) as scope:
                    result = await attempt(node)
                if scope.cancelled_caught:
                    raise _AttemptTimedOut(
                        f"{req.service} {req.endpoint} on {node.address} took longer "
                        f"than {limit:g}s",
                        id=req.service,
                    )
            except (Unavailable, _AttemptTimedOut) as exc:
                self.health.failed(node)
                safe = getattr(exc, "unprocessed", False) or idempotent
                if not safe or failures >= retries:
                    if isinstance(exc, _AttemptTimedOut):
                        raise Timeout(exc.detail, id=req.service, grpc_status=4) from None
                    raise
                failures += 1
                log.info("call to %s on %s failed (%s); retrying", req.service, node.address, exc)
                await anyio.sleep(backoff_delay(_RETRY_WAIT, failures))
                records = await self.lookup(req.service)
                continue
            finally:
                self.selector.finished(node)
            self.health.succeeded(node)
            return result

    async def lookup(self, service: str) -> list[ServiceRecord]:
        """The records of ``service`` from the client's registry cache (NotFound without any)."""
        cache = await self._open_registry()
        return await cache.get_service(service)

    _lookup = lookup

    async def publish(
        self,
        topic: str,
        value: Any,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Publish ``value`` to ``topic`` (see :meth:`micro.Service.publish`)."""
        if self.broker is None:
            # MICRO_BROKER or the default, chosen by URL like every backend
            self.broker = plugins.resolve("broker", None, client=self)
        message = encode(topic, value, content_type=content_type, headers=headers)
        await self.telemetry.publish(message, self.broker.publish)

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
        if self._pool is None:
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
        if self.credentials is not None and "authorization" not in md:
            md.update(await self.credentials())
        observed = self.telemetry.client_call(service, endpoint, md)
        try:
            async with self._stream(
                service, endpoint, request, response_type, md, timeout, address, content_type, codec
            ) as s:
                yield s
        except BaseException as exc:
            observed.end(exc)
            raise
        observed.end(None)

    @contextlib.asynccontextmanager
    async def _stream(
        self,
        service: str,
        endpoint: str,
        request: Any,
        response_type: Any,
        md: dict[str, str],
        timeout: float | None,
        address: str | None,
        content_type: str,
        codec: Codec,
    ) -> AsyncIterator[ClientStream[Any]]:
        pool = self._pool
        assert pool is not None
        req = ClientRequest(
            service, endpoint, None, response_type, md, content_type, timeout, address
        )
        deadline = _deadline(timeout)

        async def open_on(node: Node) -> tuple[H2ClientConnection, int, StreamParts]:
            conn = await pool.get(node.address, None if address else service)
            headers = _request_headers(req, node.address, True, codec, deadline, self._scheme)
            sid, parts = await conn.open_stream(headers)
            return conn, sid, parts

        with cancel_scope(_or_inf(deadline)) as scope:
            conn, sid, parts = await self._on_nodes(req, open_on)
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


class _AttemptTimedOut(MicroError):
    """One attempt outlived ``attempt_timeout`` (the handler may have run)."""


_RETRY_WAIT = tenacity.wait_exponential_jitter(multiplier=0.01, max=0.5, jitter=0.01)


def _candidates(
    records: list[ServiceRecord], version: str | None, metadata: Mapping[str, str] | None
) -> list[Node]:
    def matches(record: ServiceRecord, node: Node) -> bool:
        return all(
            node.metadata.get(k, record.metadata.get(k)) == v for k, v in (metadata or {}).items()
        )

    return [
        node
        for record in records
        if version is None or record.version == version
        for node in record.nodes
        if matches(record, node)
    ]


def _declared_idempotent(records: list[ServiceRecord], endpoint: str) -> bool:
    for record in records:
        for ep in record.endpoints:
            if ep.name == endpoint:
                return ep.metadata.get("idempotent") == "true"
    return False


def _or_inf(deadline: float | None) -> float:
    return deadline if deadline is not None else float("inf")


def _request_headers(
    req: ClientRequest,
    address: str,
    grpc: bool,
    codec: Codec,
    deadline: float | None,
    scheme: str = "http",
) -> list[tuple[str, str]]:
    headers = [
        (":method", "POST"),
        (":scheme", scheme),
        (":path", path_from_endpoint(req.endpoint)),
        (":authority", address),
        ("content-type", req.content_type),
    ]
    if grpc:
        headers.append(("te", "trailers"))
        headers.append(("grpc-accept-encoding", ACCEPT_ENCODING))
    else:
        headers.append(("accept", codec.content_type))
    if deadline is not None:
        headers.append(("grpc-timeout", _timeout_header(deadline - anyio.current_time())))
    headers.extend(metadata_to_headers(req.metadata))
    return headers


def _timeout_header(remaining: float) -> str:
    """``grpc-timeout`` for ``remaining`` seconds, above 0.1 s rounded up to a millisecond.

    So calls made with the same timeout send the same header, which the
    peer's HPACK decoder then knows (a value exact to the microsecond would be
    new on every call).
    """
    if 0.1 <= remaining < 99_999:
        return f"{math.ceil(remaining * 1000)}m"
    return format_grpc_timeout(remaining)


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
    decoder = MessageDecoder(max_size, parts.header("grpc-encoding", "identity"))
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
