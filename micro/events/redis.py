"""Event streams in Redis Streams, through coredis (AnyIO: asyncio and Trio alike).

Theory: a topic is a Redis stream, ``<prefix><topic>:s`` (the topic escaped,
"%" and ":" as %25 and %3A), its retention a hash ``<prefix><topic>:r``.
``publish`` is ``XADD`` (publishes in flight together go as one script call);
the entry id (``<ms>-<n>``, the server's clock) is the
event's id and time. A group is a Redis consumer group (``XGROUP CREATE`` at
``0``, ``$`` or just before a time); a consumer without a group gets a group of
its own, ``~<hex>``, destroyed when it stops. Each consumer is a Redis consumer
of its group and claims events with one script: ``XAUTOCLAIM`` takes back
entries of the group pending longer than ``ack_wait`` (from any consumer,
crashed ones included) with their delivery counts, then ``XREADGROUP`` reads
new ones. With nothing to claim, it blocks in ``XREADGROUP`` for new entries
for at most a second (or ``ack_wait``), then claims again. ``ack`` is
``XACK``, one for a batch: acks made while more of the batch waits to be
handed out go in one ``XACK`` before the next claim (or with the batch's last
ack, or when the consumer stops); one never sent only means a redelivery after
``ack_wait``. ``nack`` re-claims the entry with a huge idle time, so the next claim
of any consumer of the group takes it; an entry past ``retry_limit`` is copied
to ``<topic>.dead`` and acknowledged in one script.

Retention is applied by the scripts that publish, read and claim (``XTRIM``
by ``MAXLEN`` and ``MINID``). Durability is the Redis server's: an event
whose ``publish`` returned survives a restart when the server persists with
AOF (``appendfsync always`` for every event, ``everysec`` for all but the
last second's).

It is one module past the usual size because it is one backend: its Lua
scripts and the calls that run them share the stream's key layout.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import math
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import coredis
import coredis.exceptions

from .._redis import RedisServer, errors, escape, shared_client
from ..broker.base import new_message_id
from ..refcount import Users
from ..store._group import Batcher, Pending
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

__all__ = ["RedisEventStream"]

#: an event to publish: its stream and retention keys, metadata JSON and payload
_Publish = tuple[bytes, bytes, bytes, bytes]

#: where streams live unless told otherwise
DEFAULT_PREFIX = "micro:events:"
#: seconds to connect, and to wait for one answer
DEFAULT_TIMEOUT = 5.0
#: most publishes, and bytes of payload, one script call carries
BATCH_ITEMS = 256
BATCH_BYTES = 4 * 1024 * 1024
#: events one claim hands a consumer at most
PREFETCH = 32
#: seconds a consumer with nothing to claim blocks for new events before claiming again
MAX_BLOCK = 1.0
#: seconds of idleness after which a crashed group-less consumer's group is destroyed
EPHEMERAL_TTL = 3600.0
#: the idle time (ms) a nack gives an entry, so any consumer's next claim takes it
_DUE_NOW = 10**12

_TRIM = """
local function trim(stream, retention)
  local r = redis.call('HMGET', retention, 'age', 'events')
  if r[2] then redis.call('XTRIM', stream, 'MAXLEN', '=', r[2]) end
  if r[1] then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('XTRIM', stream, 'MINID', '=', now - math.floor(tonumber(r[1]) * 1000))
  end
end
"""
# KEYS: stream, retention, per event. ARGV: metadata, payload, per event. The ids, in order.
_PUBLISH = (
    _TRIM
    + """
local ids = {}
for i = 1, #KEYS, 2 do
  ids[#ids + 1] = redis.call('XADD', KEYS[i], '*', 'm', ARGV[i], 'p', ARGV[i + 1])
  trim(KEYS[i], KEYS[i + 1])
end
return ids
"""
)
# KEYS: stream, retention. ARGV: start id, count (-1: all).
_READ = (
    _TRIM
    + """
trim(KEYS[1], KEYS[2])
if tonumber(ARGV[2]) < 0 then return redis.call('XRANGE', KEYS[1], ARGV[1], '+') end
return redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
"""
)
# KEYS: stream, retention. ARGV: max age (s, "" for none), max events ("" for none).
_RETAIN = (
    _TRIM
    + """
redis.call('DEL', KEYS[2])
if ARGV[1] ~= '' then redis.call('HSET', KEYS[2], 'age', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], 'events', ARGV[2]) end
trim(KEYS[1], KEYS[2])
return 1
"""
)
# KEYS: stream, retention. ARGV: group, consumer, ack_wait ms, prefetch.
# Returns {id, fields, deliveries} per entry: taken back ones first, then new ones.
_CLAIM = (
    _TRIM
    + """
trim(KEYS[1], KEYS[2])
local out = {}
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0',
                           'COUNT', ARGV[4])
for _, entry in ipairs(claimed[2]) do
  if entry then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
    out[#out + 1] = {entry[1], entry[2], p[1][4]}
  end
end
local room = tonumber(ARGV[4]) - #out
if room > 0 then
  local new = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', room,
                         'STREAMS', KEYS[1], '>')
  if new then
    for _, entry in ipairs(new[1][2]) do out[#out + 1] = {entry[1], entry[2], 1} end
  end
end
return out
"""
)
# KEYS: stream, dead stream, dead retention. ARGV: group, id, metadata, payload.
_DEAD = (
    _TRIM
    + """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'm', ARGV[3], 'p', ARGV[4])
trim(KEYS[2], KEYS[3])
return 1
"""
)
# KEYS: stream. ARGV: group, its start id, consumer. The group (if new) and the
# consumer in one step, so a group-less consumer's group is never seen without one.
_JOIN = """
redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM')
redis.call('XGROUP', 'CREATECONSUMER', KEYS[1], ARGV[1], ARGV[3])
return 1
"""
# KEYS: stream. ARGV: group, consumer. Forgets the consumer if it holds nothing.
_LEAVE = """
local held = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #held == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return #held
"""
# KEYS: stream. ARGV: idle ms. Destroys group-less consumers' groups idle that long.
_SWEEP = """
local gone = 0
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name = g[2]
  if string.sub(name, 1, 1) == '~' then
    local live = false
    for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], name)) do
      if c[6] < tonumber(ARGV[1]) then live = true end
    end
    if not live then
      redis.call('XGROUP', 'DESTROY', KEYS[1], name)
      gone = gone + 1
    end
  end
end
return gone
"""

_SCRIPTS = {
    "publish": _PUBLISH,
    "read": _READ,
    "retain": _RETAIN,
    "claim": _CLAIM,
    "dead": _DEAD,
    "join": _JOIN,
    "leave": _LEAVE,
    "sweep": _SWEEP,
}


class RedisEventStream:
    """An EventStream in Redis Streams; ``async with RedisEventStream("redis://…/0") as s:``.

    Open and close it in the same task: coredis runs its connections in a task
    group that the opening task hosts. It uses the process's one client for the
    server (:func:`micro._redis.shared_client`), shared with a Redis store on it.
    """

    kind = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._server = RedisServer.from_url(url)
        self.host, self.port, self.db = self._server.host, self._server.port, self._server.db
        self.timeout = timeout
        self.prefix = prefix
        # The process's one client for the server, shared with a Redis store on it.
        self._shared = shared_client(self._server, connect_timeout=timeout)
        self._client: coredis.Redis[bytes] | None = None
        self._scripts: dict[str, Any] = {}
        self._users = Users()
        # Publishes in flight together go as one script call.
        self._publishes: Batcher[_Publish, Any] = Batcher(
            self._publish, max_items=BATCH_ITEMS, max_bytes=BATCH_BYTES
        )

    @property
    def address(self) -> str:
        return self._server.address

    async def __aenter__(self) -> RedisEventStream:
        await self._users.enter(self._open)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._users.exit(self._close)

    async def _open(self) -> None:
        # No stream timeout: a consumer's XREADGROUP blocks on purpose.
        self._client, self._scripts = await self._shared.open(EventsUnavailable, _SCRIPTS)

    async def _close(self) -> None:
        if self._client is not None:
            with anyio.CancelScope(shield=True):
                await self._publishes.wait_idle()
            self._client = None
            await self._shared.close()

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
        self._client_now()
        stream, retention = self._keys(topic)
        item = (stream, retention, json.dumps(meta).encode(), payload)
        try:
            raw = await self._publishes.submit(item, len(payload))
        except EventsUnavailable as exc:
            raise PublishError(f"event for {topic} not stored: {exc.detail}") from None
        id = _text(raw)
        return Event(id, topic, _time(id), meta, payload)

    async def _publish(self, batch: builtins.list[Pending[_Publish, Any]]) -> None:
        """Every event of the batch with one script call, which Redis runs atomically."""
        keys: builtins.list[bytes] = []
        args: builtins.list[bytes] = []
        for pending in batch:
            stream, retention, meta, payload = pending.item
            keys += [stream, retention]
            args += [meta, payload]
        try:
            # Shielded: other publishers' events ride on this call (bounded by the timeout).
            with anyio.CancelScope(shield=True):
                try:
                    with anyio.fail_after(self.timeout):
                        ids = await self._run("publish", keys, args)
                except TimeoutError:
                    raise EventsUnavailable(f"redis at {self.address} timed out") from None
        except EventsUnavailable as exc:
            for pending in batch:  # an error of its own for each publisher to raise
                pending.fail(EventsUnavailable(exc.detail))
            return
        for pending, id in zip(batch, ids, strict=True):
            pending.finish(id)

    async def read(
        self, topic: str, *, since: Offset = "start", limit: int | None = None
    ) -> builtins.list[Event]:
        start = check_read(topic, since, limit)
        if start is None or limit == 0:
            return []
        first = "-" if start <= 0 else f"{_ms(start)}-0"
        entries = await self._run(
            "read", self._keys(topic), [first, -1 if limit is None else limit]
        )
        return [_event(topic, entry[0], entry[1]) for entry in entries]

    async def retain(
        self, topic: str, *, max_age: float | None = None, max_events: int | None = None
    ) -> None:
        check_topic(topic)
        check_retention(max_age, max_events)
        args = [
            "" if max_age is None else repr(float(max_age)),
            "" if max_events is None else max_events,
        ]
        await self._run("retain", self._keys(topic), args)

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

    def _keys(self, topic: str) -> builtins.list[bytes]:
        """The stream and the retention hash of ``topic``."""
        base = self.prefix + escape(topic)
        return [f"{base}:s".encode(), f"{base}:r".encode()]

    def _client_now(self) -> coredis.Redis[bytes]:
        if self._client is None:
            raise EventsUnavailable(
                "the redis event stream is not open: use it inside `async with stream:`"
            )
        return self._client

    async def _run(self, script: str, keys: builtins.list[bytes], args: builtins.list[Any]) -> Any:
        self._client_now()
        with self._errors():
            return await self._scripts[script](keys, args)

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return errors(self.address, EventsUnavailable)


class _Consumer:
    """One Redis consumer of a group: claims, blocks for new entries, settles."""

    def __init__(
        self,
        stream: RedisEventStream,
        topic: str,
        group: str | None,
        ack_wait: float,
        retry_limit: int,
    ) -> None:
        self.stream = stream
        self.topic = topic
        self.group = group
        self.name = group if group is not None else f"~{new_message_id()}"
        self.consumer = new_message_id()
        self.ack_wait = ack_wait
        self.retry_limit = retry_limit
        self.keys = stream._keys(topic)
        self.buffer: deque[Event] = deque()
        #: events acknowledged while more of their batch waited to be handed out: one
        #: XACK takes them before the next claim (or when the consumer stops)
        self.acks: builtins.list[str] = []

    @contextlib.asynccontextmanager
    async def running(self, start: float | None) -> AsyncIterator[AsyncIterator[Event]]:
        await self._join(start)
        events = self._events()
        try:
            yield events
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.stream.timeout):
                await close_consumed(events)
                await self._leave()

    async def _join(self, start: float | None) -> None:
        if start is None:
            at = "$"
        elif start <= 0:
            at = "0"
        else:  # just before the first millisecond at or after ``start``
            at = f"{_ms(start) - 1}-18446744073709551615"
        self.stream._client_now()
        with self.stream._errors():
            if self.group is None:
                with contextlib.suppress(coredis.exceptions.ResponseError):  # no stream yet
                    await self.stream._scripts["sweep"]([self.keys[0]], [int(EPHEMERAL_TTL * 1000)])
            await self.stream._scripts["join"]([self.keys[0]], [self.name, at, self.consumer])

    async def _leave(self) -> None:
        """Give back what was claimed but never handed out; drop a group of its own."""
        held = list(self.buffer)
        self.buffer.clear()
        stream = self.stream
        with contextlib.suppress(EventsUnavailable):
            client = stream._client_now()
            with stream._errors():
                await self._write_acks(client)
                if self.group is None:
                    await client.xgroup_destroy(self.keys[0], self.name)
                    return
                for event in held:  # never handed out: this delivery does not count
                    await self._due_now(client, event.id, max(event.deliveries - 1, 0))
                await stream._scripts["leave"]([self.keys[0]], [self.name, self.consumer])

    async def _events(self) -> AsyncIterator[Event]:
        stream = self.stream
        while True:
            while not self.buffer:
                if self.acks:
                    with stream._errors():
                        await self._write_acks(stream._client_now())
                await self._claim()
                if self.buffer:
                    break
                client = stream._client_now()
                block = int(min(self.ack_wait, MAX_BLOCK) * 1000)
                with stream._errors():
                    try:
                        reply = await client.xreadgroup(
                            self.name,
                            self.consumer,
                            {self.keys[0]: ">"},
                            count=PREFETCH,
                            block=block,
                        )
                    except coredis.exceptions.ResponseError as exc:
                        if not _no_group(exc):
                            raise
                        await self._join(None)  # the group was destroyed: go on from here
                        continue
                for entries in (reply or {}).values():
                    for entry in entries:
                        fields = dict(entry.field_values)
                        self.buffer.append(self._event(entry.identifier, fields, 1))
            yield self.buffer.popleft()

    async def _claim(self) -> None:
        args = [self.name, self.consumer, max(int(self.ack_wait * 1000), 1), PREFETCH]
        stream = self.stream
        stream._client_now()
        with stream._errors():
            try:
                entries = await stream._scripts["claim"](self.keys, args)
            except coredis.exceptions.ResponseError as exc:
                if not _no_group(exc):
                    raise
                await self._join(None)  # the group was destroyed: go on from here
                return
        for raw_id, flat, deliveries in entries:
            fields = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
            event = self._event(raw_id, fields, int(deliveries))
            if event.deliveries > self.retry_limit + 1:
                reason = f"not acknowledged after {event.deliveries - 1} deliveries"
                await self._dead_letter(
                    Event(
                        event.id,
                        event.topic,
                        event.timestamp,
                        event.metadata,
                        event.payload,
                        event.deliveries - 1,
                    ),
                    reason,
                )
            else:
                self.buffer.append(event)

    def _event(self, raw_id: Any, fields: Mapping[Any, Any], deliveries: int) -> Event:
        event = _event(self.topic, raw_id, fields)
        return Event(
            event.id,
            event.topic,
            event.timestamp,
            event.metadata,
            event.payload,
            deliveries,
            self._settle,
        )

    async def _dead_letter(self, event: Event, reason: str) -> None:
        meta = json.dumps(dead_metadata(event, self.group, reason))
        dead_keys = self.stream._keys(self.topic + DEAD_SUFFIX)
        await self.stream._run(
            "dead",
            [self.keys[0], *dead_keys],
            [self.name, event.id, meta, event.payload],
        )

    async def _settle(self, event: Event, how: str, reason: str) -> None:
        stream = self.stream
        if how == "reject":
            await self._dead_letter(event, reason)
            return
        if how == "ack":
            self.acks.append(event.id)
            if self.buffer and len(self.acks) < PREFETCH:
                return  # one XACK takes them before the next claim, which comes next
        client = stream._client_now()
        with stream._errors():
            if how == "ack":
                await self._write_acks(client)
            else:  # nack
                await self._due_now(client, event.id)

    async def _write_acks(self, client: coredis.Redis[bytes]) -> None:
        """Acknowledge, in one XACK, what was acknowledged and not written yet."""
        acks, self.acks = self.acks, []
        if acks:
            await client.xack(self.keys[0], self.name, acks)

    async def _due_now(
        self, client: coredis.Redis[bytes], id: str, deliveries: int | None = None
    ) -> None:
        """Make the entry due at once for the group's next claim (by any consumer);
        ``deliveries`` sets its delivery count, else it stays as it is."""
        await client.xclaim(
            self.keys[0],
            self.name,
            self.consumer,
            0,
            [id],
            idle=_DUE_NOW,
            retrycount=deliveries,
            justid=True,
        )


def _no_group(exc: coredis.exceptions.ResponseError) -> bool:
    """The error says the group (or its stream) is gone."""
    return isinstance(exc, coredis.exceptions.StreamConsumerGroupError) or "NOGROUP" in str(exc)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(timestamp: float) -> int:
    """The first millisecond at or after ``timestamp`` (exact for an event's own time)."""
    return math.ceil(round(timestamp * 1000, 3))


def _time(id: str) -> float:
    return int(id.partition("-")[0]) / 1000


def _event(topic: str, raw_id: Any, fields: Mapping[Any, Any] | builtins.list[Any]) -> Event:
    if isinstance(fields, list):
        fields = {fields[i]: fields[i + 1] for i in range(0, len(fields), 2)}
    id = _text(raw_id)
    meta = json.loads(fields.get(b"m", b"{}"))
    return Event(id, topic, _time(id), meta, bytes(fields.get(b"p", b"")))
