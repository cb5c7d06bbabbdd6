"""A service's event consumers: typed async functions run as supervised parts.

``EventConsumer`` turns ``async def on_order(order: Order) -> None`` (or
``(order, event)``, or ``(event: Event)``) into a long-running part that
consumes a topic: each event is decoded into the first parameter's type,
the function is called, and the event is acknowledged when it returns and
nacked when it raises (so it comes back, up to the retry limit, then goes to
``<topic>.dead``). An event that does not decode into the type is
dead-lettered at once, as no retry could help. Events are handled one at a
time, in order. Each delivery is counted and traced as a pub/sub delivery is
(the trace context travels in the event's metadata).

``publish_observed`` publishes through a service's telemetry the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..broker.base import Message
from ..broker.subscriber import CONTENT_TYPE_HEADER, decoded_signature, encode
from ..errors import BadRequest
from .base import (
    Encoded,
    Event,
    EventStream,
    Offset,
    check_consume_call,
    check_topic,
)

if TYPE_CHECKING:
    from ..observability import Telemetry

__all__ = ["ConsumerFn", "EventConsumer", "publish_observed"]

log = logging.getLogger("micro.events")

ConsumerFn = Callable[..., Awaitable[Any]]


class EventConsumer:
    """One consumer of a service: ``run(stream)`` consumes until cancelled."""

    def __init__(
        self,
        topic: str,
        fn: ConsumerFn,
        *,
        group: str | None = None,
        offset: Offset = None,
        ack_wait: float = 30.0,
        retry_limit: int = 5,
        telemetry: Telemetry | None = None,
    ) -> None:
        check_consume_call(topic, group, offset, ack_wait, retry_limit)
        self.topic = topic
        self.fn = fn
        self.group = group
        self.offset = offset
        self.ack_wait = ack_wait
        self.retry_limit = retry_limit
        self._into, self._with_event = decoded_signature(fn, "consumer", "Event")

        async def call(message: Message) -> None:
            await self._call(message)

        self._handler = call if telemetry is None else telemetry.subscriber(topic, group, call)
        #: events handled, and those whose function raised, since the start
        self.handled = 0
        self.failed = 0
        # The event being handled (one at a time), for the function's call.
        self._value: Any = None
        self._event: Event | None = None

    async def run(
        self,
        stream: EventStream,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Consume until cancelled; reports started once consuming."""
        async with stream.consume(
            self.topic,
            group=self.group,
            offset=self.offset,
            ack_wait=self.ack_wait,
            retry_limit=self.retry_limit,
        ) as events:
            task_status.started()
            async for event in events:
                await self.handle(event)

    async def handle(self, event: Event) -> None:
        """Decode, call, and settle one event; the function's failure is logged, not raised."""
        if self._into is Event:
            value: Any = event
        else:
            try:
                value = event.decode(self._into)
            except BadRequest as exc:
                log.error("event %s of %s does not decode: %s", event.id, event.topic, exc.detail)
                await event.reject(f"undecodable: {exc.detail}")
                return
        message = Message(event.topic, event.payload, event.metadata, event.id)
        self._value = value
        self._event = event
        try:
            await self._handler(message)
        except Exception as exc:
            self.failed += 1
            log.error(
                "consumer of %s failed on event %s (delivery %d)",
                event.topic,
                event.id,
                event.deliveries,
                exc_info=exc,
            )
            await event.nack()
            return
        self.handled += 1
        await event.ack()

    async def _call(self, message: Message) -> None:
        if self._with_event:
            await self.fn(self._value, self._event)
        else:
            await self.fn(self._value)


async def publish_observed(
    stream: EventStream,
    telemetry: Telemetry,
    topic: str,
    value: Any,
    *,
    metadata: Mapping[str, str] | None = None,
    content_type: str | None = None,
) -> Event:
    """Publish ``value`` counted and traced as a pub/sub message (trace context in metadata)."""
    check_topic(topic)
    try:
        message = encode(topic, value, content_type=content_type, headers=metadata)
    except TypeError as exc:
        raise BadRequest(f"cannot encode the event for {topic}: {exc}") from None
    stored: list[Event] = []

    async def send(message: Message) -> None:
        headers = dict(message.headers)
        encoded = Encoded(message.body, headers.pop(CONTENT_TYPE_HEADER))
        stored.append(await stream.publish(message.topic, encoded, metadata=headers))

    await telemetry.publish(message, send)
    return stored[0]
