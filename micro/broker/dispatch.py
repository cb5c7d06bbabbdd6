"""A subscription's handler runs, then the delivery is answered: acknowledged means handled.

A :class:`Dispatcher` sits between deliveries (the HTTP broker's inbox, the
memory broker's publishers) and one subscription's handler. :meth:`deliver`
hands a message over and returns only once the handler has returned; if the
handler raised, or the subscription ended before the handler finished, it
raises instead. So a delivery the publisher saw succeed was handled, and a
subscriber process that dies mid-handler leaves its publisher with an error
(and a queue group's next member to try): at least once, never lost after an
acknowledgement.

The handlers run in the subscription's own task group (the supervised part,
with its own context, not the delivering call's), at most ``limit`` at once;
a delivery finding every slot taken waits for one up to ``accept_timeout``,
then is refused as busy. Running handlers concurrently is what lets a handler
publish to its own topic without waiting on itself.

A subscription that is stopped takes no more deliveries and lets the
handlers already running finish, for up to ``drain_timeout`` seconds; one
still running then is cancelled and its delivery fails.

A delivery whose publisher stops waiting (its deadline, or it went away)
before the handler started is withdrawn and never handled; once started, the
handler finishes and its outcome is dropped (the publisher may then send the
message again: handlers see a message id at least once).
"""

from __future__ import annotations

import logging

import anyio
import anyio.abc

from ..errors import MicroError, NotFound, TooManyRequests, Unavailable
from .base import ErrorHandler, Handler, Message

__all__ = [
    "Dispatcher",
    "SubscriptionGone",
    "HandlerFailed",
    "SUBSCRIPTION_GONE",
    "HANDLER_FAILED",
    "report_failure",
    "run_handler",
]

log = logging.getLogger("micro.broker")

#: the error id of a delivery to a subscription that has ended (unsubscribed, or its
#: service stopping) before it took the message: it is not a subscriber any more
SUBSCRIPTION_GONE = "micro.broker.subscription-gone"
#: the error id of a delivery whose handler raised, or was stopped before it finished
HANDLER_FAILED = "micro.broker.handler-failed"


class SubscriptionGone(NotFound):
    """The subscription ended before it took the message: nothing was handled."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, id=SUBSCRIPTION_GONE)


class HandlerFailed(Unavailable):
    """The subscriber took the message but did not finish handling it."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, id=HANDLER_FAILED)


async def report_failure(
    message: Message, exc: BaseException, on_error: ErrorHandler | None
) -> None:
    """Log a handler's failure with its topic and message id, and pass it to ``on_error``."""
    log.error("subscriber of %s failed on message %s", message.topic, message.id, exc_info=exc)
    if on_error is not None:
        try:
            await on_error(message, exc)
        except Exception:
            log.exception("error handler for %s failed", message.topic)


async def run_handler(handler: Handler, message: Message, on_error: ErrorHandler | None) -> None:
    """Call a subscriber; its failure is reported, never raised into the subscription."""
    try:
        await handler(message)
    except Exception as exc:
        await report_failure(message, exc, on_error)


class _Pending:
    """One delivery on its way through: the message, and how its handling ended."""

    __slots__ = ("done", "error", "message", "withdrawn")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.done = anyio.Event()
        self.error: MicroError | None = None
        self.withdrawn = False


class Dispatcher:
    """Runs one subscription's handler per delivery; see the module's docstring."""

    def __init__(
        self,
        topic: str,
        handler: Handler,
        *,
        on_error: ErrorHandler | None = None,
        limit: int = 1024,
        drain_timeout: float = 5.0,
    ) -> None:
        if limit < 1:
            raise ValueError(f"a subscription must run at least one handler at once, not {limit}")
        self.topic = topic
        self.handler = handler
        self.on_error = on_error
        self.limit = limit
        self.drain_timeout = drain_timeout
        self._slots = anyio.Semaphore(limit)
        #: deliveries handed to a handler task and not finished
        self._in_flight = 0
        #: the cancel scopes of the handlers running now
        self._handlers: set[anyio.CancelScope] = set()
        self._idle = anyio.Event()
        #: set once a stopped subscription's drain time is over: no handler starts after it
        self._cut_off = False
        #: the subscription's task group while it runs; handlers run in it
        self._tasks: anyio.abc.TaskGroup | None = None

    @property
    def running(self) -> int:
        """Deliveries being handled now."""
        return self._in_flight

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Take deliveries until cancelled; then let running handlers finish, within bounds."""
        async with anyio.create_task_group() as tg:
            self._tasks = tg
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._tasks = None  # deliveries from now on find the subscription gone
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.drain_timeout):
                    while self._in_flight:
                        self._idle = anyio.Event()
                        await self._idle.wait()
                self._cut_off = True
                for scope in self._handlers:
                    scope.cancel()

    async def deliver(self, message: Message, *, accept_timeout: float | None = None) -> None:
        """Hand ``message`` to the handler and wait until it has run.

        Raises SubscriptionGone if the subscription is not running (nothing
        was handled), TooManyRequests if no slot freed within
        ``accept_timeout`` seconds (None: wait for one), and HandlerFailed if
        the handler raised or was stopped.
        """
        if self._tasks is None:
            raise SubscriptionGone(f"the subscription to {message.topic} has ended")
        try:
            self._slots.acquire_nowait()
        except anyio.WouldBlock:
            try:
                with anyio.fail_after(accept_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise TooManyRequests(
                    f"the subscriber of {message.topic} is busy with {self.limit} messages"
                ) from None
        tasks = self._tasks
        if tasks is None:  # ended while this delivery waited for a slot
            self._slots.release()
            raise SubscriptionGone(f"the subscription to {message.topic} has ended")
        pending = _Pending(message)
        self._in_flight += 1
        tasks.start_soon(self._handle, pending)
        try:
            await pending.done.wait()
        finally:
            pending.withdrawn = True  # a handler not started yet never will be
        if pending.error is not None:
            raise pending.error

    async def _handle(self, pending: _Pending) -> None:
        message = pending.message
        # Shielded: a subscription that is stopping lets its running handlers finish
        # (up to drain_timeout) rather than cutting them off mid-way.
        scope = anyio.CancelScope(shield=True)
        self._handlers.add(scope)
        try:
            if pending.withdrawn:
                return  # its publisher stopped waiting before it began
            if self._cut_off:
                scope.cancel()
            with scope:
                try:
                    await self.handler(message)
                except Exception as exc:
                    # A MicroError's detail is meant for callers; other errors are only named.
                    reason = exc.detail if isinstance(exc, MicroError) else type(exc).__name__
                    pending.error = HandlerFailed(
                        f"the subscriber of {message.topic} failed on message {message.id}: "
                        f"{reason}"
                    )
                    await report_failure(message, exc, self.on_error)
            if scope.cancelled_caught:
                pending.error = HandlerFailed(
                    f"the subscription to {message.topic} ended while handling message {message.id}"
                )
        finally:
            self._handlers.discard(scope)
            self._in_flight -= 1
            self._slots.release()
            pending.done.set()
            if not self._in_flight:
                self._idle.set()
