"""The HTTP broker (the embedded default): pub/sub with no broker server.

Subscribing: each subscription is announced in the registry as a node of the
service ``micro.topic.<topic>``, at the subscribing service's own address,
with its queue group in the node's metadata, and its messages arrive at that
service's listener as calls to ``micro.Broker.Deliver``. The subscription
keeps its registration alive (heartbeat) and removes it when it ends, before
the service's listener stops, so publishers stop choosing it first.

Publishing: the publisher looks the topic's subscribers up through its
registry cache and delivers over its pooled HTTP/2 connections: to every
subscriber without a group, and to one node of each queue group, chosen by
the selector, trying the group's other nodes when a delivery fails. A
delivery is answered once the subscriber's handler has run (see
:mod:`micro.broker.dispatch`): a handler that raises, a subscriber that dies
or is stopped mid-handler, one busy with ``buffer`` messages for longer than
``accept_timeout``, or no answer within ``deliver_timeout`` make the delivery
fail over to the group's next node. ``publish`` raises PublishError if any
subscriber or group that should get the message did not handle it. So a
``publish`` that returned was handled, at least once: a subscriber that dies
after its handler returned but before it answered makes the publisher send
the message again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.abc

from ..errors import MicroError, NotFound
from ..registry.base import Node, ServiceRecord
from .base import ErrorHandler, Handler, Message, PublishError, url_options
from .dispatch import HANDLER_FAILED, SUBSCRIPTION_GONE, Dispatcher, SubscriptionGone
from .memory import DEFAULT_BUFFER

if TYPE_CHECKING:
    from ..registry.base import Registry
    from ..selector.base import Selector
    from ..selector.health import NodeHealth

__all__ = [
    "Caller",
    "HttpBroker",
    "BrokerInbox",
    "Delivery",
    "topic_service",
    "http_options",
    "INBOX_NAME",
]

log = logging.getLogger("micro.broker")

INBOX_NAME = "micro.Broker"
DELIVER_ENDPOINT = f"{INBOX_NAME}.Deliver"
DELIVER_CONTENT_TYPE = "application/grpc+msgpack"


def topic_service(topic: str) -> str:
    """The registry name under which a topic's subscribers are announced."""
    return f"micro.topic.{topic}"


@dataclass
class Delivery:
    """What travels to a subscriber's ``micro.Broker.Deliver``."""

    subscription: str
    topic: str
    id: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class BrokerInbox:
    """The delivery endpoint every service serves, handing messages to its subscriptions."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, Dispatcher] = {}
        self.accept_timeout = 5.0

    def add(self, subscription: str, dispatcher: Dispatcher) -> None:
        self._subscriptions[subscription] = dispatcher

    def remove(self, subscription: str) -> None:
        self._subscriptions.pop(subscription, None)

    async def deliver(self, req: Delivery) -> dict[str, str]:
        dispatcher = self._subscriptions.get(req.subscription)
        if dispatcher is None:
            # Unsubscribed meanwhile (the registry will catch up): try another node.
            raise SubscriptionGone(f"no subscription {req.subscription} here")
        message = Message(req.topic, req.body, req.headers, req.id)
        await dispatcher.deliver(message, accept_timeout=self.accept_timeout)
        return {"id": req.id}


def http_options(url: str) -> dict[str, Any]:
    """HttpBroker options from an ``http?buffer=64&accept_timeout=1s`` URL's query."""
    from ..config.values import to_duration, to_int

    convert = {
        "buffer": to_int,
        "accept_timeout": to_duration,
        "deliver_timeout": to_duration,
        "register_ttl": to_duration,
        "register_interval": to_duration,
    }
    return url_options(url, convert, "HTTP")


class Caller(Protocol):
    """What the HTTP broker needs to deliver messages: calls to a node's address,
    the registry's view of a topic's subscribers, and node selection with health.

    :class:`micro.Client` satisfies it; the broker depends on this, not on the client.
    """

    registry: Registry
    selector: Selector
    health: NodeHealth

    async def lookup(self, service: str) -> list[ServiceRecord]:
        """The registry's records of ``service``; NotFound when it has none."""
        ...

    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any,
        response_type: Any = ...,
        *,
        timeout: float | None = ...,
        address: str | None = ...,
        content_type: str | None = ...,
    ) -> Any:
        """Call ``endpoint`` of ``service`` (at ``address``) and return its answer."""
        ...


class HttpBroker:
    """Publishes through a caller (a client); subscribes through a service's listener."""

    def __init__(
        self,
        client: Caller,
        *,
        registry: Registry | None = None,
        inbox: BrokerInbox | None = None,
        address: Any = None,
        buffer: int = DEFAULT_BUFFER,
        register_ttl: float = 30.0,
        register_interval: float = 10.0,
        deliver_timeout: float = 10.0,
        accept_timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.registry = registry if registry is not None else client.registry
        self.inbox = inbox
        if inbox is not None:
            #: how long a delivery to a full subscription waits before it is refused
            inbox.accept_timeout = accept_timeout
        #: a callable giving this service's advertised address (known once it listens)
        self._address = address
        self.buffer = buffer
        self.register_ttl = register_ttl
        self.register_interval = register_interval
        self.deliver_timeout = deliver_timeout

    # -- publishing ----------------------------------------------------------

    async def publish(self, message: Message) -> None:
        try:
            records = await self.client.lookup(topic_service(message.topic))
        except NotFound:
            return  # nobody subscribes: nobody should get it
        broadcast: list[Node] = []
        groups: dict[str, list[Node]] = {}
        for record in records:
            for node in record.nodes:
                queue = node.metadata.get("queue", "")
                if queue:
                    groups.setdefault(queue, []).append(node)
                else:
                    broadcast.append(node)
        failed: list[str] = []
        async with anyio.create_task_group() as tg:
            for node in broadcast:
                tg.start_soon(self._to_one, message, [node], failed, "")
            for queue, nodes in groups.items():
                tg.start_soon(self._to_one, message, nodes, failed, queue)
        if failed:
            raise PublishError(
                f"message {message.id} on {message.topic} was not handled by " + ", ".join(failed)
            )

    async def _to_one(
        self, message: Message, nodes: list[Node], failed: list[str], queue: str
    ) -> None:
        """Deliver to one of ``nodes``, trying each in turn (selector order first)."""
        remaining = list(nodes)
        last: BaseException | None = None
        gone = 0
        while remaining:
            node = self.client.selector.select(
                topic_service(message.topic), self.client.health.available(remaining)
            )
            remaining.remove(node)
            delivery = Delivery(
                node.metadata.get("subscription", node.id),
                message.topic,
                message.id,
                message.body,
                dict(message.headers),
            )
            try:
                await self.client.call(
                    topic_service(message.topic),
                    DELIVER_ENDPOINT,
                    delivery,
                    address=node.address,
                    content_type=DELIVER_CONTENT_TYPE,
                    timeout=self.deliver_timeout,
                )
                self.client.health.succeeded(node)
                return
            except MicroError as exc:
                if exc.id == SUBSCRIPTION_GONE:
                    # Unsubscribed since the registry said otherwise: not a subscriber now.
                    gone += 1
                    continue
                last = exc
                if exc.id != HANDLER_FAILED:  # the node answered: its handler failed
                    self.client.health.failed(node)
                log.info("delivery of %s to %s failed: %s", message.id, node.address, exc)
        if gone == len(nodes):
            return  # every one had unsubscribed: nobody to deliver to
        label = f"queue group {queue}" if queue else f"subscriber at {nodes[0].address}"
        failed.append(f"{label} ({last})")

    # -- subscribing ---------------------------------------------------------

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        if self.inbox is None or self._address is None:
            raise RuntimeError("subscribing through the HTTP broker needs a running Service")
        subscription = uuid.uuid4().hex
        dispatcher = Dispatcher(topic, handler, on_error=on_error, limit=self.buffer)
        record = ServiceRecord(
            name=topic_service(topic),
            metadata={"broker": "http", "topic": topic},
            nodes=(
                Node(
                    id=subscription,
                    address=self._address(),
                    metadata={"queue": queue or "", "subscription": subscription},
                ),
            ),
        )
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(dispatcher.run)
                self.inbox.add(subscription, dispatcher)
                await self.registry.register(record, ttl=self.register_ttl)
                tg.start_soon(self._heartbeat, record)
                task_status.started()
        finally:
            self.inbox.remove(subscription)
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                try:
                    await self.registry.deregister(record)
                except Exception:
                    log.warning("deregistering subscription to %s failed", topic, exc_info=True)

    async def _heartbeat(self, record: ServiceRecord) -> None:
        while True:
            await anyio.sleep(self.register_interval)
            try:
                await self.registry.register(record, ttl=self.register_ttl)
            except Exception as exc:
                log.warning("refreshing subscription %s failed: %s", record.name, exc)

    async def __aenter__(self) -> HttpBroker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        pass
