"""A service's subscriptions: typed functions subscribed to topics, each a supervised part.

:class:`Subscriptions` holds what ``@service.subscriber`` and
``service.subscribe`` add: each function is turned into a broker handler
that decodes the message by its annotation (:func:`typed_handler`), wrapped
by ``observe`` (the service's telemetry counts and traces each delivery),
and run as one :class:`Subscription`. :meth:`Subscriptions.start` starts
them all as parts of the service's supervisor; one added while the service
runs starts at once. On shutdown :meth:`Subscriptions.stop` ends them all
(for the HTTP broker, that takes them out of the registry) before the
listener stops taking deliveries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc

from ..supervisor import Supervisor
from .base import Broker, ErrorHandler, Handler
from .subscriber import typed_handler

__all__ = ["Observe", "SubscriberFn", "Subscription", "Subscriptions"]

#: a subscribed function: ``async def fn(value)`` or ``async def fn(value, message)``
SubscriberFn = Callable[..., Awaitable[Any]]
#: wraps a topic's handler, given the topic and queue group (counting, tracing)
Observe = Callable[[str, str | None, Handler], Handler]

#: how long a shutdown or an unsubscribe waits for subscriptions to end
STOP_TIMEOUT = 5.0


class Subscription:
    """One subscription: a supervised part that can be stopped before the others."""

    def __init__(
        self,
        topic: str,
        handler: Handler,
        queue: str | None,
        on_error: ErrorHandler | None,
        fn: SubscriberFn,
    ) -> None:
        self.topic = topic
        self.handler = handler
        self.queue = queue
        self.on_error = on_error
        #: the function subscribed, as the user gave it
        self.fn = fn
        self._stopping = False
        self._scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None

    async def run(
        self,
        broker: Broker,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Subscribe through ``broker`` until stopped or cancelled."""
        self._stopped = anyio.Event()
        try:
            with anyio.CancelScope() as self._scope:
                if self._stopping:  # stopped before it began
                    self._scope.cancel()
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
        """End the subscription (now, or as soon as it begins)."""
        self._stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def wait_stopped(self) -> None:
        """Return once a subscription that ran has ended."""
        if self._stopped is not None:
            await self._stopped.wait()


class Subscriptions:
    """The subscriptions of one service, on one broker."""

    def __init__(self, broker: Broker, *, observe: Observe | None = None) -> None:
        self.broker = broker
        self._observe = observe
        self._all: list[Subscription] = []
        self._supervisor: Supervisor | None = None

    def __len__(self) -> int:
        return len(self._all)

    def add(
        self,
        topic: str,
        fn: SubscriberFn,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
    ) -> Subscription:
        """Subscribe ``fn`` to ``topic``, to run from :meth:`start` on.

        Raises TypeError if ``fn`` is not an async function taking the decoded
        message (and optionally the Message).
        """
        handler = typed_handler(fn)
        if self._observe is not None:
            handler = self._observe(topic, queue, handler)
        subscription = Subscription(topic, handler, queue, on_error, fn)
        self._all.append(subscription)
        return subscription

    async def add_now(
        self,
        topic: str,
        fn: SubscriberFn,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
    ) -> None:
        """Subscribe while the subscriptions run; returns once the new one is in place."""
        if self._supervisor is None:
            raise RuntimeError("the subscriptions are not running")
        subscription = self.add(topic, fn, queue=queue, on_error=on_error)
        await self._start(self._supervisor, subscription)

    async def remove(self, topic: str, fn: SubscriberFn | None = None) -> int:
        """End the subscriptions to ``topic`` (only ``fn``'s, if given); returns how many.

        Once it returns (or after :data:`STOP_TIMEOUT` seconds), they take
        nothing more.
        """
        ending = [s for s in self._all if s.topic == topic and (fn is None or s.fn is fn)]
        for subscription in ending:
            self._all.remove(subscription)
            subscription.stop()
        with anyio.move_on_after(STOP_TIMEOUT, shield=True):
            for subscription in ending:
                await subscription.wait_stopped()
        return len(ending)

    async def start(self, supervisor: Supervisor) -> None:
        """Start each subscription as a part of ``supervisor``; returns once all are in place."""
        self._supervisor = supervisor
        for subscription in self._all:
            await self._start(supervisor, subscription)

    async def stop(self) -> None:
        """End every subscription, waiting up to :data:`STOP_TIMEOUT` seconds for them."""
        self._supervisor = None
        for subscription in self._all:
            subscription.stop()
        with anyio.move_on_after(STOP_TIMEOUT):
            for subscription in self._all:
                await subscription.wait_stopped()

    async def _start(self, supervisor: Supervisor, subscription: Subscription) -> None:
        await supervisor.start(f"subscriber {subscription.topic}", subscription.run, self.broker)
