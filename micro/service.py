"""Service: a named, discoverable server plus a client, run as one task group.

``serve()`` runs until SIGINT/SIGTERM or :meth:`Service.stop`;
``running()`` runs the same parts inside the caller's code. Start order:
before-start hooks, client, listener (bound before anything is announced),
registration and its heartbeat, after-start hooks. Stop order is the reverse
and graceful: before-stop hooks, deregister (so no client is sent here any
more), stop accepting and send GOAWAY, let calls in flight finish within the
grace period, cancel what is left, after-stop hooks.

This module is the composition root and the public face, and nothing else:
``Service`` builds its parts from :class:`~micro.options.ServiceOptions`,
runs them in the order above, and offers the methods users call. How each
part works lives with that part: subscriptions in
:mod:`micro.broker.subscriptions`, event consumers in
:mod:`micro.events.consumer`, the registered record and the address it
advertises in :mod:`micro.registry.record`, registration and its heartbeat
in :mod:`micro.registry.heartbeat`, readiness and its pages in
:mod:`micro.health.readiness`. It stays one module, past the usual size,
because it is one class whose documented public methods are most of it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ._startup import EXIT_ERROR, bad_options_exit, debug_enabled, describe, exit_with, root_cause
from .auth.accounts import Account
from .auth.auth import Auth
from .auth.middleware import ClientAuth, ServerAuth
from .auth.tls import TLSConfig
from .broker import resolve_broker
from .broker.base import Broker, ErrorHandler
from .broker.http import INBOX_NAME, BrokerInbox
from .broker.subscriber import encode
from .broker.subscriptions import SubscriberFn, Subscriptions
from .client.client import Client, ClientMiddleware
from .config import Config
from .events import Event, EventStream, Offset, resolve_events
from .events.consumer import ConsumerFn, EventConsumer, publish_observed
from .health import HEALTH_SERVICE_NAME, Check, HealthService, Readiness
from .health.readiness import ServiceHealth, json_page
from .observability import DEBUG_NAME, DebugService, Telemetry
from .observability.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .observability.metrics import exposition
from .observability.stats import runtime_stats
from .options import OPTION_NAMES as _OPTION_NAMES
from .options import build_options, security, telemetry_options
from .registry import resolve_registry
from .registry.base import Registry, ServiceRecord
from .registry.heartbeat import Registration
from .registry.record import advertised_address, service_record
from .selector.base import Selector
from .server.endpoint import Endpoint
from .server.schema import json_schema
from .server.server import (
    Middleware,
    Server,
    ServerOptions,
    WebResponse,
)
from .store import Store, resolve_store
from .store.sweeper import SweptStore, run_sweeper
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
        events: EventStream | str | None = None,
        sync: Sync | str | None = None,
        selector: Selector | str | None = None,
        retries: int | None = None,
        attempt_timeout: float | None = None,
        register: bool | None = None,
        register_ttl: float | None = None,
        register_interval: float | None = None,
        grace_period: float | None = None,
        max_message_size: int | None = None,
        max_concurrent_streams: int | None = None,
        middleware: list[Middleware] | None = None,
        client_middleware: list[ClientMiddleware] | None = None,
        config: Config | None = None,
        auth: Auth | None = None,
        tls: TLSConfig | None = None,
        metrics: bool | None = None,
        tracing: bool | Any = None,
        request_log: str | int | None = None,
        health_interval: float | None = None,
        argv: Sequence[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        # Options given here win; then --micro-* flags, then MICRO_* variables,
        # then the defaults (micro.options). Read from this process's own command line
        # and environment, a bad one ends the program with one line (exit status 2).
        from_process = argv is None and environ is None
        given = {k: v for k, v in locals().items() if k in _OPTION_NAMES}
        with bad_options_exit(from_process):
            o = build_options(given, argv, environ)
        # Values that came from there, not from code (checked as they are used below).
        #: the options the service was built from, arguments and environment merged
        self.options = o
        from_options = o.from_environment if from_process else frozenset()
        auth, tls = security(o)
        #: authentication and authorization (None: off)
        self.auth = auth
        #: TLS for the listener and the client (None: h2c and plain HTTP)
        self.tls = tls
        telemetry = telemetry_options(o)
        self.health_interval: float = o.health_interval
        self.config = o.config
        #: the service's key-value store (opened lazily by the backend on first use)
        with bad_options_exit("store" in from_options, "--micro-store/MICRO_STORE"):
            self.store: Store = resolve_store(o.store)
        with bad_options_exit("registry" in from_options, "--micro-registry/MICRO_REGISTRY"):
            registry = resolve_registry(o.registry)
        with bad_options_exit("address" in from_options, "--micro-address/MICRO_ADDRESS"):
            parse_address(o.address)
        self._events_given = o.events is not None
        #: durable event streams (opened with the service once given or consumed)
        self.events: EventStream = resolve_events(o.events)
        self._consumers: list[EventConsumer] = []
        self.name = name
        self.version = o.version
        self.metadata = dict(o.metadata or {})
        self.registry = registry
        self.id = f"{name}-{uuid.uuid4()}"
        #: distributed locks and leader election; lease keepers run in the service's group
        self.sync: Sync = resolve_sync(o.sync, id=self.id)
        self._address = o.address
        self._advertise = o.advertise
        self._register = o.register
        self.register_ttl = o.register_ttl
        self.register_interval = o.register_interval
        self.grace_period = o.grace_period
        server_auth = None
        if auth is not None:
            auth.use_store(self.store)
            server_auth = ServerAuth(auth, name)
        #: metrics, spans, request logs and counts of this service's calls and messages
        self.telemetry = Telemetry(name, self.id, telemetry)
        self.server = Server(
            name,
            ServerOptions(
                max_message_size=o.max_message_size,
                max_concurrent_streams=o.max_concurrent_streams,
            ),
            # Checked before a request is decoded and before any middleware runs.
            call_guard=server_auth.check_call if server_auth is not None else None,
            route_guard=server_auth.check_route if server_auth is not None else None,
            observer=self.telemetry,
        )
        for mw in o.middleware:
            self.server.use(mw)
        self._health = ServiceHealth(name, self.id, phase=lambda: self._phase)
        #: the serving statuses the gRPC health service answers with
        self.health = self._health.status
        #: named readiness checks; add your own with :meth:`health_check`
        self.checks = self._health.checks
        self.server.handle(
            HealthService(self.health, refresh=self.readiness), name=HEALTH_SERVICE_NAME
        )
        self.server.handle(DebugService(self.stats), name=DEBUG_NAME)
        self._add_routes(telemetry.metrics)
        #: this service's own account, the identity its calls carry (with auth on)
        self.identity: Account | None = None
        credentials = None
        if auth is not None and auth.keys.signing is not None:
            self.identity = auth.service_account(name, node=self.id)
            credentials = ClientAuth(auth, account=self.identity).metadata
        self.client = Client(
            registry=registry,
            selector=o.selector,
            retries=o.retries,
            attempt_timeout=o.attempt_timeout,
            max_message_size=o.max_message_size,
            middleware=list(o.client_middleware),
            tls=tls,
            telemetry=self.telemetry,
            credentials=credentials,
        )
        self._inbox = BrokerInbox()
        self.server.handle(self._inbox, name=INBOX_NAME)
        self.broker = resolve_broker(
            o.broker,
            client=self.client,
            registry=registry,
            inbox=self._inbox,
            address=self._advertised_address,
        )
        # The one part set after it is made: the HTTP broker delivers through this
        # client, and the client publishes through the broker.
        self.client.broker = self.broker
        self._subscriptions = Subscriptions(self.broker, observe=self.telemetry.subscriber)
        self._supervisor: Supervisor | None = None
        self._hooks: dict[str, list[Hook]] = {
            "before_start": [],
            "after_start": [],
            "before_stop": [],
            "after_stop": [],
        }
        self._listener: Listener | None = None
        self._stop: anyio.Event | None = None
        self._registration = Registration(
            registry, ttl=self.register_ttl, interval=self.register_interval
        )
        #: stopped, starting, serving or draining
        self._phase = "stopped"
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
        self._subscriptions.add(topic, handler, queue=queue, on_error=on_error)

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
        await self._subscriptions.add_now(topic, handler, queue=queue, on_error=on_error)

    async def unsubscribe(self, topic: str, handler: SubscriberFn | None = None) -> int:
        """End the subscriptions to ``topic`` (only ``handler``'s, if given); returns how many.

        Once it returns, they receive nothing more, and (HTTP broker) the
        registry no longer sends publishers to them. Works before the service
        starts too, and unsubscribing what is not subscribed ends nothing.
        """
        return await self._subscriptions.remove(topic, handler)

    async def publish(
        self,
        topic: str,
        value: Any,
        *,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Publish ``value`` to ``topic``, encoded by content type (JSON by default)."""
        message = encode(topic, value, content_type=content_type, headers=headers)
        await self.telemetry.publish(message, self.broker.publish)

    # -- event streams ---------------------------------------------------------

    def consumer(
        self,
        topic: str,
        *,
        group: str | None = None,
        offset: Offset = None,
        ack_wait: float = 30.0,
        retry_limit: int = 5,
    ) -> Callable[[ConsumerFn], ConsumerFn]:
        """Consume an event topic with a typed async function, as a supervised part::

        @service.consumer("orders", group="billing")
        async def bill(order: Order) -> None: ...

        The event is acknowledged when the function returns and nacked when it raises.
        """

        def register(fn: ConsumerFn) -> ConsumerFn:
            if self._supervisor is not None:
                raise RuntimeError("add consumers before the service starts")
            consumer = EventConsumer(
                topic,
                fn,
                group=group,
                offset=offset,
                ack_wait=ack_wait,
                retry_limit=retry_limit,
                telemetry=self.telemetry,
            )
            self._consumers.append(consumer)
            return fn

        return register

    async def publish_event(
        self,
        topic: str,
        value: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Event:
        """Store ``value`` on ``topic`` of the event stream, counted and traced as publish is."""
        return await publish_observed(
            self.events,
            self.telemetry,
            topic,
            value,
            metadata=metadata,
            content_type=content_type,
        )

    def _advertised_address(self) -> str:
        host, port = parse_address(self.address)
        return advertised_address(host, port, advertise=self._advertise)

    async def call(
        self, service: str, endpoint: str, request: Any, response_type: Any = Any, **options: Any
    ) -> Any:
        """Shorthand for ``service.client.call(...)``."""
        return await self.client.call(service, endpoint, request, response_type, **options)

    # -- running -------------------------------------------------------------

    async def serve(self) -> None:
        """Run until SIGINT/SIGTERM or :meth:`stop`, then shut down gracefully.

        A failure to start (a port in use, an unreachable registry) ends the
        program with one line on stderr naming what failed and exit status 1;
        with ``MICRO_DEBUG=1`` the error is raised instead.
        """
        stop = self._stop = anyio.Event()
        started = False
        try:
            async with anyio.create_task_group() as tg:
                # Signals are caught before the port opens: one that arrives while the
                # service starts stops it gracefully once it has started.
                await tg.start(self._stop_on_signal)
                async with self.running():
                    started = True
                    await stop.wait()
                tg.cancel_scope.cancel()
        except BaseException as exc:
            error = root_cause(exc)
            if error is exc and (started or isinstance(exc, BaseExceptionGroup)):
                raise
            if started or debug_enabled() or not isinstance(error, Exception):
                raise error from None
            exit_with(f"{self.name}: {describe(error)}", EXIT_ERROR)

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
            leaf = root_cause(group)
            if leaf is group:
                raise
            raise leaf from None

    @contextlib.asynccontextmanager
    async def _running(self) -> AsyncIterator[Service]:
        async with contextlib.AsyncExitStack() as stack:
            self._phase = "starting"
            registration = self._registration = Registration(
                self.registry, ttl=self.register_ttl, interval=self.register_interval
            )
            stack.callback(setattr, self, "_phase", "stopped")
            for hook in self._hooks["before_start"]:
                await hook()
            stack.push_async_callback(self._run_hooks, "after_stop")
            if self._register or self._subscriptions:
                await stack.enter_async_context(self.registry)
            await stack.enter_async_context(self.client)
            await stack.enter_async_context(self.broker)
            await stack.enter_async_context(self.store)
            if self._events_given or self._consumers:
                await stack.enter_async_context(self.events)
            tg = await stack.enter_async_context(anyio.create_task_group())
            await stack.enter_async_context(self.sync.running(tg))
            supervisor = self._supervisor = Supervisor(tg)
            # The client's registry watchers run as parts of the service from here on.
            stack.enter_context(self.client.supervised_by(supervisor))
            if self.config is not None:
                # Loaded before the port opens: a broken required source fails the start.
                await stack.enter_async_context(self.config.running(supervisor))
            if self.auth is not None:
                await self.auth.load()
                supervisor.start_soon("auth rules", self._reload_rules)
            ssl_context = None
            if self.tls is not None and self.tls.cert is not None:
                ssl_context = self.tls.server_context()
            self._listener = Listener(self.server, self._address, ssl_context=ssl_context)
            self.address = await supervisor.start("listener", self._listener.serve)
            try:
                if self._register:
                    await registration.register(self._make_record())
                    supervisor.start_soon("registry heartbeat", registration.heartbeat)
                await self._subscriptions.start(supervisor)
                for consumer in self._consumers:
                    await supervisor.start(f"consumer {consumer.topic}", consumer.run, self.events)
                self._phase = "serving"
                self._add_default_checks()
                self._health.set(True)
                supervisor.start_soon(
                    "health checks", self._health.keep_current, self.health_interval
                )
                if isinstance(self.store, SweptStore):  # deletes what its reads only skip
                    supervisor.start_soon("store sweeper", run_sweeper, self.store)
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
        served = self._phase == "serving"
        self._phase = "draining"
        self._health.set(False)
        for hook in self._hooks["before_stop"]:
            with contextlib.suppress(Exception):
                await hook()
        await self._registration.deregister()
        # Subscriptions leave the registry before the listener stops taking deliveries.
        await self._subscriptions.stop()
        listener = self._listener
        if listener is not None:
            listener.drain()
            with anyio.move_on_after(self.grace_period):
                await self.server.wait_idle()
                # Connections close themselves once their last answer is sent.
                await listener.wait_closed()
            listener.close()
        if served:  # one that failed to start says so once, where it failed
            log.info("service %s stopped", self.name)

    # -- health, metrics, stats ----------------------------------------------

    def health_check(self, name: str, *, timeout: float = 2.0) -> Callable[[Check], Check]:
        """Add a readiness check: an async function that raises or returns False when failing::

        @service.health_check("database", timeout=1.0)
        async def database() -> None:
            await db.execute("select 1")
        """

        def register(check: Check) -> Check:
            self.checks.add(name, check, timeout=timeout)
            return check

        return register

    async def readiness(self) -> Readiness:
        """Run the checks now; ready when serving, registered and every check passes.

        The gRPC health service's statuses are set to the answer, so HTTP and
        gRPC probes agree.
        """
        return await self._health.readiness()

    def stats(self) -> dict[str, Any]:
        """Debug stats: uptime, calls, errors, in flight, messages, memory, tasks."""
        telemetry = self.telemetry
        return {
            "service": self.name,
            "version": self.version,
            "node": self.id,
            "address": self.address,
            **runtime_stats(telemetry.started),
            "requests": telemetry.requests,
            "errors": telemetry.errors,
            "inflight": self.server.inflight,
            "published": telemetry.published,
            "delivered": telemetry.delivered,
            # the supervised parts: state, restarts and last error of each
            "parts": {
                **self.client.parts(),
                **(self._supervisor.stats() if self._supervisor is not None else {}),
            },
        }

    def _add_default_checks(self) -> None:
        checks = self.checks
        names = checks.names
        if self._registration.record is not None and "registry" not in names:
            # The heartbeat talks to the registry anyway: its last outcome is the check.
            checks.add("registry", self._registration_check)
        broker_check = getattr(self.broker, "check", None)
        if broker_check is not None and "broker" not in names:
            checks.add("broker", broker_check)
        if "store" not in names:

            async def store() -> None:
                await self.store.list(prefix="micro/health", limit=1)

            checks.add("store", store)

    def _add_routes(self, metrics: bool) -> None:
        routes = self.server.routes
        routes.update(self._health.pages())

        async def stats() -> WebResponse:
            return json_page(self.stats())

        routes["/debug/stats"] = stats
        if metrics:

            async def scrape() -> WebResponse:
                return WebResponse(200, METRICS_CONTENT_TYPE, exposition())

            routes["/metrics"] = scrape

    async def _run_hooks(self, kind: str) -> None:
        for hook in self._hooks[kind]:
            await hook()

    async def _reload_rules(self) -> None:
        """Pick up rules granted or revoked by other processes sharing the store."""
        assert self.auth is not None
        while True:
            await anyio.sleep(self.auth.refresh_interval)
            await self.auth.load()

    async def _registration_check(self) -> None:
        await self._registration.check()  # the one of the current run

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
        return service_record(
            self.name,
            version=self.version,
            node=self.id,
            address=self._advertised_address(),
            metadata=self.metadata,
            endpoints=self.server.router.endpoints(),
            schema=json_schema,
            internal=(HEALTH_SERVICE_NAME, INBOX_NAME, DEBUG_NAME),
        )
