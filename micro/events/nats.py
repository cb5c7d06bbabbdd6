"""Event streams in NATS JetStream, on micro's own NATS client.

Theory: each topic is a JetStream stream of its own, capturing one subject,
``micro.events.<topic>`` (so core pub/sub on ``<topic>`` is left alone), named
after the topic (letters, digits and '-' kept, any other byte as ``_XX``). A
group is a durable pull consumer named after it; a consumer without a group
is an ephemeral pull consumer, deleted when it stops (and by the server after
an hour without pulls, if its process died). Consumers acknowledge
explicitly, with the consumer's ``ack_wait``; redelivery is the server's.
Past ``retry_limit`` redeliveries an event is copied to ``<topic>.dead`` and
terminated (``+TERM``). A group's ``offset`` and ``ack_wait`` are those of the
consumer that created it.

``publish`` is a JetStream publish with the event's id as ``Nats-Msg-Id``: it
returns once the stream has stored the event, and a publish whose answer was
lost (a connection dropped) is sent again with the same id until the server
answers or ``timeout`` passes; the server keeps one copy. Events are on the
server's disk (``storage="file"``, the default): they survive the server
restarting. ``read`` uses a short-lived consumer that acknowledges nothing.
Retention is the stream's own ``max_age`` and ``max_msgs``.
"""

from __future__ import annotations

import builtins
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import anyio

from ..broker.base import PublishError as BrokerPublishError
from ..broker.base import new_message_id, url_options
from ..errors import BadRequest, NotFound, Timeout
from ..nats import NatsClient, NatsUnavailable, shared_client
from ..nats.jetstream import JetStream, JetStreamError, Puller, message_info, nanos
from ..nats.protocol import Msg
from ..refcount import Users
from .base import (
    DEAD_SUFFIX,
    Event,
    EventsUnavailable,
    Offset,
    PublishError,
    check_consume_call,
    check_read,
    check_retention,
    check_topic,
    close_consumed,
    dead_metadata,
    encode_event,
)

__all__ = ["JetStreamEventStream", "jetstream_options"]

#: the subject a topic's events are stored under is this plus the topic
SUBJECT_PREFIX = "micro.events."
#: stream names are this plus the escaped topic
STREAM_PREFIX = "EVENTS-"
#: events one pull asks for at most
PREFETCH = 32
#: seconds one pull waits for events before the consumer asks again
PULL_WAIT = 0.5
#: seconds a group-less consumer's server-side state outlives its last pull
EPHEMERAL_TTL = 3600.0
#: seconds within which a publish sent again is stored once (JetStream's default)
DUPLICATE_WINDOW = 120.0
_ID_HEADER = "Nats-Msg-Id"


def jetstream_options(url: str) -> tuple[str, dict[str, Any]]:
    """The server URL(s) and options of a ``nats://host:4222?storage=memory`` URL."""

    def storage(value: str) -> str:
        if value not in ("file", "memory"):
            raise ValueError(f"storage is file or memory, not {value!r}")
        return value

    return url.partition("?")[0], url_options(url, {"storage": storage}, "NATS events")


def stream_name(topic: str) -> str:
    """The JetStream stream holding ``topic``: one name per topic, none shared."""
    out = []
    for byte in topic.encode():
        char = chr(byte)
        out.append(char if char.isascii() and (char.isalnum() or char == "-") else f"_{byte:02X}")
    return STREAM_PREFIX + "".join(out)


class JetStreamEventStream:
    """An EventStream in NATS JetStream; ``async with JetStreamEventStream("nats://…") as s:``.

    Open and close it in the same task (the NATS client's task group lives there).
    Unless given ``client``, it uses the process's shared client for ``servers``
    (:func:`micro.nats.shared_client`), which a NATS broker on the same server uses too.
    """

    kind = "nats"

    def __init__(
        self,
        servers: str = "nats://127.0.0.1:4222",
        *,
        storage: str = "file",
        timeout: float = 10.0,
        client: NatsClient | None = None,
    ) -> None:
        self.client = client if client is not None else shared_client(servers, timeout=timeout)
        self.storage = storage
        self.timeout = timeout
        self.js = JetStream(self.client, timeout=timeout)
        self._streams: set[str] = set()
        self._users = Users()

    async def __aenter__(self) -> JetStreamEventStream:
        try:
            await self.client.__aenter__()
        except NatsUnavailable as exc:
            raise EventsUnavailable(f"NATS is unreachable: {exc.detail}") from exc
        await self._users.enter()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if await self._users.exit():
            self._streams.clear()
        await self.client.__aexit__(None, None, None)

    # -- the EventStream protocol --

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Event:
        payload, meta = encode_event(topic, message, metadata, content_type)
        return await self._store(topic, payload, meta, new_message_id())

    async def _store(self, topic: str, payload: bytes, meta: dict[str, str], id: str) -> Event:
        """Store an encoded event under ``id`` (the server keeps one copy per id)."""
        self._check_open()
        stamp = time.time()
        subject = SUBJECT_PREFIX + topic
        try:  # the usual case, without a cancel scope of its own
            await self.js.publish(subject, payload, headers=meta, msg_id=id)
        except (NotFound, NatsUnavailable, BrokerPublishError, Timeout):
            await self._store_again(topic, subject, payload, meta, id)
        return Event(id, topic, stamp, meta, payload)

    async def _store_again(
        self, topic: str, subject: str, payload: bytes, meta: dict[str, str], id: str
    ) -> None:
        """Publish until stored, making the stream if need be, for up to ``timeout`` seconds."""
        name = stream_name(topic)
        reason = "no answer in time"
        try:
            with anyio.fail_after(self.timeout):
                while True:
                    try:
                        await self.js.publish(subject, payload, headers=meta, msg_id=id)
                        break
                    except NotFound:  # no stream for the topic yet, or one still recovering
                        known = name in self._streams
                        self._streams.discard(name)
                        try:
                            if known:
                                await anyio.sleep(0.05)
                            await self._stream(topic)
                            continue
                        except JetStreamError as exc:
                            if exc.api_status != 503:
                                raise
                            reason = exc.detail
                        except (NatsUnavailable, BrokerPublishError, Timeout) as exc:
                            reason = exc.detail
                    except JetStreamError as exc:
                        if exc.api_status != 503:  # refused, not unavailable
                            raise
                        reason = exc.detail
                    except (NatsUnavailable, BrokerPublishError, Timeout) as exc:
                        # The answer was lost, maybe the event too: again, with the same id.
                        self._check_open()
                        reason = exc.detail
                    await anyio.sleep(0.05)
        except (JetStreamError, TimeoutError) as exc:
            detail = exc.detail if isinstance(exc, JetStreamError) else reason
            raise PublishError(f"event for {topic} not stored: {detail}") from None
        except EventsUnavailable as exc:  # closed meanwhile
            raise PublishError(f"event for {topic} not stored: {exc.detail}") from None

    async def read(
        self, topic: str, *, since: Offset = "start", limit: int | None = None
    ) -> builtins.list[Event]:
        start = check_read(topic, since, limit)
        self._check_open()
        if start is None or limit == 0:
            return []
        name = stream_name(topic)
        with self._errors():
            if await self.js.stream_info(name) is None:
                return []
            config = {
                "ack_policy": "none",
                "inactive_threshold": nanos(60.0),
                "mem_storage": True,
                **_deliver(start),
            }
            created = await self.js.add_consumer(name, config)
            consumer = created["name"]
            wanted = int(created.get("num_pending", 0))
            if limit is not None:
                wanted = min(wanted, limit)
            events: builtins.list[Event] = []
            try:
                async with self.client.subscribe(_inbox()) as inbox:
                    puller = self.js.puller(
                        name, consumer, inbox, batch=min(wanted, 1024), expires=PULL_WAIT
                    )
                    while len(events) < wanted:
                        msgs = await puller.fetch()
                        if not msgs:
                            break  # dropped by retention meanwhile
                        events += [_event(topic, msg) for msg in msgs]
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(NatsUnavailable):
                    await self.js.delete_consumer(name, consumer)
        return events[:wanted]

    async def retain(
        self, topic: str, *, max_age: float | None = None, max_events: int | None = None
    ) -> None:
        check_topic(topic)
        check_retention(max_age, max_events)
        self._check_open()
        with self._errors():
            await self._stream(topic)
            await self.js.update_stream(self._config(topic, max_age, max_events))

    def consume(
        self,
        topic: str,
        *,
        group: str | None = None,
        offset: Offset = None,
        ack_wait: float = 30.0,
        retry_limit: int = 5,
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        start = check_consume_call(topic, group, offset, ack_wait, retry_limit)
        return _Consumer(self, topic, group, ack_wait, retry_limit).running(start)

    # -- internals --

    def _config(
        self, topic: str, max_age: float | None = None, max_events: int | None = None
    ) -> dict[str, Any]:
        window = DUPLICATE_WINDOW if max_age is None else min(DUPLICATE_WINDOW, max_age)
        return {
            "name": stream_name(topic),
            "subjects": [SUBJECT_PREFIX + topic],
            "retention": "limits",
            "storage": self.storage,
            "discard": "old",
            "num_replicas": 1,
            "max_age": 0 if max_age is None else nanos(max_age),
            "max_msgs": -1 if max_events is None else max_events,
            "duplicate_window": nanos(window),
        }

    async def _stream(self, topic: str) -> str:
        """The topic's stream, created if there is none."""
        name = stream_name(topic)
        if name not in self._streams:
            if await self.js.stream_info(name) is None:
                try:
                    await self.js.add_stream(self._config(topic))
                except JetStreamError:
                    if await self.js.stream_info(name) is None:  # not made by another meanwhile
                        raise
            self._streams.add(name)
        return name

    def _check_open(self) -> None:
        if not self._users.open:
            raise EventsUnavailable(
                "the NATS event stream is not open: use it inside `async with stream:`"
            )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (NatsUnavailable, BrokerPublishError) as exc:
            raise EventsUnavailable(exc.detail) from exc
        except Timeout as exc:
            raise EventsUnavailable(f"NATS did not answer: {exc.detail}") from exc


class _Consumer:
    """One pull consumer: pulls batches, settles them, dead-letters what is past its retries."""

    def __init__(
        self,
        stream: JetStreamEventStream,
        topic: str,
        group: str | None,
        ack_wait: float,
        retry_limit: int,
    ) -> None:
        self.stream = stream
        self.topic = topic
        self.group = group
        self.ack_wait = ack_wait
        self.retry_limit = retry_limit
        self.name = ""
        self.stream_name = stream_name(topic)
        self.buffer: deque[Event] = deque()
        self.puller: Puller

    @contextlib.asynccontextmanager
    async def running(self, start: float | None) -> AsyncIterator[AsyncIterator[Event]]:
        stream = self.stream
        stream._check_open()
        with stream._errors():
            await stream._stream(self.topic)
            await self._join(start)
        async with stream.client.subscribe(_inbox()) as inbox:
            self.puller = stream.js.puller(
                self.stream_name, self.name, inbox, batch=PREFETCH, expires=PULL_WAIT
            )
            events = self._events()
            try:
                yield events
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(stream.timeout * 2):
                    await close_consumed(events)
                    await self._leave()

    async def _join(self, start: float | None) -> None:
        js = self.stream.js
        config: dict[str, Any] = {
            "ack_policy": "explicit",
            "ack_wait": nanos(self.ack_wait),
            "max_deliver": -1,
            **_deliver(start),
        }
        if self.group is None:
            config["inactive_threshold"] = nanos(EPHEMERAL_TTL)
            self.name = (await js.add_consumer(self.stream_name, config))["name"]
            return
        self.name = self.group
        if await js.consumer_info(self.stream_name, self.group) is None:
            try:
                await js.add_consumer(self.stream_name, {**config, "durable_name": self.group})
            except JetStreamError:
                if await js.consumer_info(self.stream_name, self.group) is None:
                    raise

    async def _leave(self) -> None:
        """Give back what was pulled but never handed out; delete a consumer of its own."""
        held = [event._handle for event in self.buffer]
        self.buffer.clear()
        js = self.stream.js
        with contextlib.suppress(NatsUnavailable, BadRequest):
            if self.group is not None:  # an ephemeral consumer's events die with it
                held += await self.puller.finish()
                for msg in held:
                    await js.nak(msg, delay=PULL_WAIT * 2)
            if self.group is None and self.name:
                await js.delete_consumer(self.stream_name, self.name)

    async def _events(self) -> AsyncIterator[Event]:
        stream = self.stream
        while True:
            while not self.buffer:
                with stream._errors():
                    try:
                        msgs = await self.puller.fetch()
                    except JetStreamError:
                        if self.group is None:
                            raise
                        await self._join(None)  # the durable was deleted: made again
                        continue
                    for msg in msgs:
                        await self._take(msg)
            yield self.buffer.popleft()

    async def _take(self, msg: Msg) -> None:
        event = _event(self.topic, msg, self._settle)
        if event.deliveries <= self.retry_limit + 1:
            self.buffer.append(event)
            return
        last = Event(
            event.id,
            event.topic,
            event.timestamp,
            event.metadata,
            event.payload,
            event.deliveries - 1,
            _handle=msg,
        )
        reason = f"not acknowledged after {last.deliveries} deliveries"
        await self._dead_letter(last, reason)

    async def _dead_letter(self, event: Event, reason: str) -> None:
        meta = dead_metadata(event, self.group, reason)
        # One id per event and group: a dead letter sent twice is stored once.
        id = f"{event.id}-dead-{self.group or self.name}"
        try:
            await self.stream._store(event.topic + DEAD_SUFFIX, event.payload, meta, id)
        except PublishError:
            return  # not terminated: it comes back after ack_wait and is tried again
        await self.stream.js.term(event._handle)

    async def _settle(self, event: Event, how: str, reason: str) -> None:
        js = self.stream.js
        with self.stream._errors():
            if how == "ack":
                await js.ack(event._handle)
            elif how == "nack":
                await js.nak(event._handle)
            else:
                await self._dead_letter(event, reason)


def _deliver(start: float | None) -> dict[str, Any]:
    if start is None:
        return {"deliver_policy": "new"}
    if start <= 0:
        return {"deliver_policy": "all"}
    moment = datetime.fromtimestamp(start, UTC)
    return {"deliver_policy": "by_start_time", "opt_start_time": moment.isoformat()}


def _inbox() -> str:
    return f"_INBOX.{new_message_id()}"


def _event(topic: str, msg: Msg, settle: Any = None) -> Event:
    info = message_info(msg.reply)
    id = str(info.stream_seq)
    metadata: dict[str, str] = {}
    for key, value in msg.headers.items():
        if key.lower() == _ID_HEADER.lower():
            id = value
        elif not key.lower().startswith("nats-"):
            metadata[key.lower()] = value
    if settle is None:
        return Event(id, topic, info.timestamp, metadata, msg.payload, info.deliveries, _handle=msg)
    return Event(
        id, topic, info.timestamp, metadata, msg.payload, info.deliveries, settle, _handle=msg
    )
