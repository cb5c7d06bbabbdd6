"""Service: a named, discoverable server plus a client, run as one task group.

``serve()`` runs until SIGINT/SIGTERM or :meth:`Service.stop`;
``running()`` runs the same parts inside the caller's code. Start order:
before-start hooks, client, listener (bound before anything is announced),
registration and its heartbeat, after-start hooks. Stop order is the reverse
and graceful: before-stop hooks, deregister (so no client is sent here any
more), stop accepting and send GOAWAY, let calls in flight finish within the
grace period, cancel what is left, after-stop hooks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .broker import resolve_broker
from .broker.base import Broker, ErrorHandler, Handler
from .broker.http import INBOX_NAME, BrokerInbox
from .broker.subscriber import encode, typed_handler
from .client.client import Client, ClientMiddleware
from .config import Config
from .config.options import service_options
from .health import HEALTH_SERVICE_NAME, HealthService, HealthStatus, ServingStatus
from .registry import resolve_registry
from .registry.base import EndpointInfo, Node, Registry, ServiceRecord
from .server.endpoint import Endpoint
from .server.schema import json_schema
from .server.server import DEFAULT_MAX_MESSAGE_SIZE, Middleware, Server, ServerOptions
from .store import Store, resolve_store
from .supervisor import Supervisor
from .sync import resolve_sync
from .sync.base import Sync
from .transport.listener import Listener, parse_address

if TYPE_CHECKING:
    from .gateway.service_app import ServiceApp

__all__ = ["Service"]

log = logging.getLogger("micro.service")

Hook = Callable[[], Awaitable[None]]


class Service:
    """A microservice: handlers served on one port, registered by name."""

    def __init__(
        self,
        name: str,
        *,
        version: str | None = None,
        address: str | None = None,
        advertise: str | None = None,
        metadata: Mapping[str, str] | None = None,
        registry: Registry | str | None = None,
        broker: Broker | str | None = None,
        store: Store | str | None = None,
        sync: Sync | str | None = None,
        register: bool | None = None,
        register_ttl: float | None = None,
        register_interval: float | None = None,
        grace_period: float | None = None,
        max_message_size: int | None = None,
        max_concurrent_streams: int | None = None,
        middleware: list[Middleware] | None = None,
        client_middleware: list[ClientMiddleware] | None = None,
        config: Config | None = None,
        argv: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        # Options given here win; then --micro-* flags, then MICRO_* variables,
        # then the defaults below.
        opts = service_options(argv, environ)

        def option(value: Any, key: str, default: Any) -> Any:
            return value if value is not None else opts.get(key, default)

        version = option(version, "version", "latest")
        address = option(address, "address", ":0")
        advertise = option(advertise, "advertise", None)
        metadata = option(metadata, "metadata", {})
        registry = option(registry, "registry", None)
        broker = option(broker, "broker", None)
        register = option(register, "register", True)
        register_ttl = option(register_ttl, "register_ttl", 30.0)
        register_interval = option(register_interval, "register_interval", 10.0)
        grace_period = option(grace_period, "grace_period", 10.0)
        max_message_size = option(max_message_size, "max_message_size", DEFAULT_MAX_MESSAGE_SIZE)
        max_concurrent_streams = option(max_concurrent_streams, "max_concurrent_streams", 1000)
        self.config = config
        #: the service's key-value store (opened lazily by the backend on first use)
        self.store: Store = resolve_store(option(store, "store", None))
        registry = resolve_registry(registry)
        parse_address(address)
        self.name = name
        self.version = version
        self.metadata = dict(metadata or {})
        self.registry = registry
        self.id = f"{name}-{uuid.uuid4()}"
        #: distributed locks and leader election; lease keepers run in the service's group
        self.sync: Sync = resolve_sync(sync, id=self.id)
        self._address = address
        self._advertise = advertise
        self._register = register
        self.register_ttl = register_ttl
        self.register_interval = register_interval
        self.grace_period = grace_period
        self.server = Server(
            name,
            ServerOptions(
                max_message_size=max_message_size, max_concurrent_streams=max_concurrent_streams
            ),
        )
        for mw in middleware or []:
            self.server.use(mw)
        self.health = HealthStatus()
        self.server.handle(HealthService(self.health), name=HEALTH_SERVICE_NAME)
        self.client = Client(
            registry=registry, max_message_size=max_message_size, middleware=client_middleware
        )
        self._inbox = BrokerInbox()
        self.server.handle(self._inbox, name=INBOX_NAME)
        self.broker = resolve_broker(
            broker,
            client=self.client,
            registry=registry,
            inbox=self._inbox,
            address=self._advertised_address,
        )
        self.client.broker = self.broker
        self._subscriptions: list[_Subscription] = []
        self._supervisor: Supervisor | None = None
        self._hooks: dict[str, list[Hook]] = {
            "before_start": [],
            "after_start": [],
            "before_stop": [],
            "after_stop": [],
        }
        self._listener: Listener | None = None
        self._stop: anyio.Event | None = None
        self._record: ServiceRecord | None = None
        self.address = ""

    # -- configuration -------------------------------------------------------

    def handle(self, handler: object, *, name: str | None = None) -> list[Endpoint]:
        """Serve every public async method of ``handler`` as ``<name>.<Method>``."""
        return self.server.handle(handler, name=name)

    def use(self, middleware: Middleware) -> None:
        """Add a server middleware: ``async def mw(request, call_next)``."""
        self.server.use(middleware)

    def asgi(self) -> ServiceApp:
        """The service's unary endpoints as an ASGI app, to mount in an ASGI stack.

        Plain calls as on the service's port (``POST /Handler/Method``, JSON,
        msgpack, ...), through the same middleware. Handlers that use the
        service's client or broker need the service running too.
        """
        from .gateway.service_app import ServiceApp

        return ServiceApp(self.server)

    def before_start(self, hook: Hook) -> Hook:
        self._hooks["before_start"].append(hook)
        return hook

    def after_start(self, hook: Hook) -> Hook:
        self._hooks["after_start"].append(hook)
        return hook

    def before_stop(self, hook: Hook) -> Hook:
        self._hooks["before_stop"].append(hook)
        return hook

    def after_stop(self, hook: Hook) -> Hook:
        self._hooks["after_stop"].append(hook)
        return hook

    # -- pub/sub ---------------------------------------------------------------

    def subscriber(
        self,
        topic: str,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
    ) -> Callable[[SubscriberFn], SubscriberFn]:
        """Subscribe a plain async function, its argument decoded by its annotation::

        @service.subscriber("user.created", queue="mailer")
        async def on_user(event: UserCreated) -> None: ...
        """

        def register(fn: SubscriberFn) -> SubscriberFn:
            self.subscribe(topic, fn, queue=queue, on_error=on_error)
            return fn

        return register

    def subscribe(
        self,
        topic: str,
        handler: SubscriberFn,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
    ) -> None:
        """Subscribe ``handler`` to ``topic`` (in queue group ``queue``, if given).

        Each subscription runs as a supervised part of the service. To add one
        while the service runs, use :meth:`subscribe_now`.
        """
        if self._supervisor is not None:
            raise RuntimeError("the service is running: use `await service.subscribe_now(...)`")
        self._subscriptions.append(_Subscription(topic, typed_handler(handler), queue, on_error))

    async def subscribe_now(
        self,
        topic: str,
        handler: SubscriberFn,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
    ) -> None:
        """Subscribe while the service runs; returns once the subscription is in place."""
        if self._supervisor is None:
            raise RuntimeError("the service is not running")
        subscription = _Subscription(topic, typed_handler(handler), queue, on_error)
        self._subscriptions.append(subscription)
        await self._start_subscription(subscription)

    async def _start_subscription(self, subscription: _Subscription) -> None:
        assert self._supervisor is not None
        await self._supervisor.start(
            f"subscriber {subscription.topic}", subscription.run, self.broker
        )

    async def publish(
        self,
        topic: str,
        value: Any,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Publish ``value`` to ``topic``, encoded by content type (JSON by default)."""
        await self.broker.publish(encode(topic, value, content_type=content_type, headers=headers))

    def _advertised_address(self) -> str:
        host, port = parse_address(self.address)
        if self._advertise is not None:
            return self._advertise
        if host in ("0.0.0.0", "::"):
            host = _host_address()
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def call(
        self, service: str, endpoint: str, request: Any, response_type: Any = Any, **options: Any
    ) -> Any:
        """Shorthand for ``service.client.call(...)``."""
        return await self.client.call(service, endpoint, request, response_type, **options)

    # -- running -------------------------------------------------------------

    async def serve(self) -> None:
        """Run until SIGINT/SIGTERM or :meth:`stop`, then shut down gracefully."""
        stop = self._stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            # Signals are caught before the port opens: one that arrives while the
            # service starts stops it gracefully once it has started.
            await tg.start(self._stop_on_signal)
            async with self.running():
                await stop.wait()
            tg.cancel_scope.cancel()

    def stop(self) -> None:
        """Ask :meth:`serve` to shut down gracefully (safe to call from a handler)."""
        if self._stop is not None:
            self._stop.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Service]:
        """Run every part of the service while the block runs; stop them on exit.

        A single error (a port already in use, an exception in the block) is
        raised as itself rather than wrapped in an exception group.
        """
        try:
            async with self._running() as service:
                yield service
        except BaseExceptionGroup as group:
            leaf = _single(group)
            if leaf is None:
                raise
            raise leaf from None

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[Service]:
        async with contextlib.AsyncExitStack() as stack:
            for hook in self._hooks["before_start"]:
                await hook()
            stack.push_async_callback(self._run_hooks, "after_stop")
            if self._register or self._subscriptions:
                await stack.enter_async_context(self.registry)
            await stack.enter_async_context(self.client)
            await stack.enter_async_context(self.broker)
            await stack.enter_async_context(self.store)
            tg = await stack.enter_async_context(anyio.create_task_group())
            await stack.enter_async_context(self.sync.running(tg))
            supervisor = self._supervisor = Supervisor(tg)
            if self.config is not None:
                # Loaded before the port opens: a broken required source fails the start.
                await stack.enter_async_context(self.config.running(supervisor))
            self._listener = Listener(self.server, self._address)
            self.address = await supervisor.start("listener", self._listener.serve)
            try:
                if self._register:
                    self._record = self._make_record()
                    await self.registry.register(self._record, ttl=self.register_ttl)
                    supervisor.start_soon("registry heartbeat", self._heartbeat)
                for subscription in self._subscriptions:
                    await self._start_subscription(subscription)
                self.health.set("", ServingStatus.SERVING)
                self.health.set(self.name, ServingStatus.SERVING)
                log.info("service %s serving on %s", self.name, self.address)
                for hook in self._hooks["after_start"]:
                    await hook()
                yield self
            finally:
                with anyio.CancelScope(shield=True):
                    await self._shutdown()
                tg.cancel_scope.cancel()
                self._supervisor = None

    async def _shutdown(self) -> None:
        self.health.set("", ServingStatus.NOT_SERVING)
        self.health.set(self.name, ServingStatus.NOT_SERVING)
        for hook in self._hooks["before_stop"]:
            with contextlib.suppress(Exception):
                await hook()
        if self._record is not None:
            with anyio.move_on_after(5):
                try:
                    await self.registry.deregister(self._record)
                except Exception:
                    log.warning("deregistering %s failed", self.name, exc_info=True)
            self._record = None
        # Subscriptions leave the registry before the listener stops taking deliveries.
        for subscription in self._subscriptions:
            subscription.stop()
        with anyio.move_on_after(5):
            for subscription in self._subscriptions:
                await subscription.wait_stopped()
        listener = self._listener
        if listener is not None:
            listener.drain()
            with anyio.move_on_after(self.grace_period):
                await self.server.wait_idle()
                # Connections close themselves once their last answer is sent.
                await listener.wait_closed()
            listener.close()
        log.info("service %s stopped", self.name)

    async def _run_hooks(self, kind: str) -> None:
        for hook in self._hooks[kind]:
            await hook()

    async def _heartbeat(self) -> None:
        assert self._record is not None
        while True:
            await anyio.sleep(self.register_interval)
            if self._record is None:
                return
            await self.registry.register(self._record, ttl=self.register_ttl)

    async def _stop_on_signal(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
            with receiver as signals:
                task_status.started()
                async for signum in signals:
                    log.info(
                        "service %s: %s, shutting down", self.name, signal.Signals(signum).name
                    )
                    self.stop()
                    return
        except (RuntimeError, ValueError, NotImplementedError):
            # Not the main thread, or no signal support: stop() still works.
            task_status.started()
            await anyio.sleep_forever()

    # -- registry record -----------------------------------------------------

    def _make_record(self) -> ServiceRecord:
        advertise = self._advertised_address()
        endpoints = tuple(
            EndpointInfo(
                name=ep.name,
                request=json_schema(ep.request_type),
                response=json_schema(ep.response_type),
                metadata={
                    "kind": ep.kind.value,
                    **({"idempotent": "true"} if ep.idempotent else {}),
                    **ep.metadata,
                },
            )
            for ep in self.server.router.endpoints()
            if not ep.name.startswith((HEALTH_SERVICE_NAME + ".", INBOX_NAME + "."))
        )
        return ServiceRecord(
            name=self.name,
            version=self.version,
            metadata=self.metadata,
            endpoints=endpoints,
            # The service's metadata travels on its node too: instances of one
            # version may differ (zone, capacity) and clients filter by node.
            nodes=(
                Node(id=self.id, address=advertise, metadata={**self.metadata, "protocol": "grpc"}),
            ),
        )


SubscriberFn = Callable[..., Awaitable[Any]]


class _Subscription:
    """One subscription of the service: a supervised part that can be stopped first."""

    def __init__(
        self, topic: str, handler: Handler, queue: str | None, on_error: ErrorHandler | None
    ) -> None:
        self.topic = topic
        self.handler = handler
        self.queue = queue
        self.on_error = on_error
        self._scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None

    async def run(
        self,
        broker: Broker,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        self._stopped = anyio.Event()
        try:
            with anyio.CancelScope() as self._scope:
                await broker.subscribe(
                    self.topic,
                    self.handler,
                    queue=self.queue,
                    on_error=self.on_error,
                    task_status=task_status,
                )
        finally:
            self._stopped.set()

    def stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def wait_stopped(self) -> None:
        if self._stopped is not None:
            await self._stopped.wait()


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one non-cancellation exception in a (nested) group, if that is all it holds."""
    leaves: list[BaseException] = []

    def walk(g: BaseExceptionGroup[BaseException]) -> None:
        for exc in g.exceptions:
            if isinstance(exc, BaseExceptionGroup):
                walk(exc)
            elif not isinstance(exc, anyio.get_cancelled_exc_class()):
                leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None


def _host_address() -> str:
    """The address other hosts reach this one by, for a service bound to every interface.

    ``MICRO_ADVERTISE_HOST`` wins; otherwise the first non-loopback IPv4 address
    the host name resolves to, else loopback. (No packet is sent to find it.)
    """
    override = os.environ.get("MICRO_ADVERTISE_HOST")
    if override:
        return override
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return "127.0.0.1"
    for info in infos:
        address = str(info[4][0])
        if not address.startswith("127."):
            return address
    return "127.0.0.1"
