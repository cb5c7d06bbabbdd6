"""The EventStream protocol, its Event, its errors and the checks every backend shares.

An event stream keeps what is published to a topic, in order, until the
topic's retention drops it. Consumers read a topic from an offset and
acknowledge each event; an event not acknowledged within ``ack_wait`` seconds
(the consumer crashed, hung, or nacked it) is delivered again, up to
``retry_limit`` more times, and then moved to the dead-letter topic
``<topic>.dead`` and logged. Consumers sharing a *group* share its events
(each event goes to one of them); a consumer without a group gets every event.

The guarantee is at least once: an event whose ``publish`` returned is kept
(as durably as the backend keeps anything) and delivered until a consumer of
each group acknowledges it, so a consumer may see an event again (after a
crash, a slow acknowledgement or a redelivery) and must be idempotent.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from ..errors import BadRequest, PayloadTooLarge, Unavailable
from ..message import CONTENT_TYPE_HEADER, decode, encode

__all__ = [
    "DEAD_SUFFIX",
    "Encoded",
    "Event",
    "EventStream",
    "EventsUnavailable",
    "Offset",
    "PublishError",
    "check_consume",
    "check_consume_call",
    "check_read",
    "close_consumed",
    "check_group",
    "check_topic",
    "dead_metadata",
    "encode_event",
    "start_time",
]

log = logging.getLogger("micro.events")

T = TypeVar("T")

#: where an event goes after its last delivery failed: ``<topic>.dead``
DEAD_SUFFIX = ".dead"
#: the largest payload, the default limit of a NATS server's messages
MAX_PAYLOAD = 1024 * 1024
#: the longest topic or group name
MAX_NAME = 200

#: where a consumer starts: ``"start"`` (everything kept), ``"new"`` or None (what is
#: published from now on), or a time (a ``time.time()`` timestamp or a datetime)
Offset = float | int | datetime | Literal["start", "new"] | None

# Topics are dot-separated tokens (NATS subjects); groups are one token.
_TOKEN = r"[^\s.*>\x00-\x1f\x7f]+"
_TOPIC = re.compile(rf"{_TOKEN}(\.{_TOKEN})*")
_GROUP = re.compile(r"[A-Za-z0-9_-]+")
_META_KEY = re.compile(r"[!#-9;-~]+")  # printable ASCII without space or colon


class EventsUnavailable(Unavailable):
    """The stream is closed, or its backend cannot be reached (the detail says which)."""


class PublishError(EventsUnavailable):
    """The event was not stored; nothing was kept on its behalf."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """A message already encoded: published as these bytes, with this content type."""

    payload: bytes
    content_type: str


Settle = Callable[["Event", str, str], Awaitable[None]]


async def _settle_nothing(event: Event, how: str, reason: str) -> None:
    """Events from :meth:`EventStream.read` belong to no consumer: nothing to settle."""


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event: ``payload`` bytes, typed with ``decode``.

    ``deliveries`` counts the deliveries to the consumer's group, this one
    included (1 the first time). Events from ``consume`` are settled with
    :meth:`ack`, :meth:`nack` or :meth:`reject`; those from ``read`` need not be.
    """

    id: str
    topic: str
    timestamp: float
    metadata: Mapping[str, str]
    payload: bytes
    deliveries: int = 1
    _settle: Settle = field(default=_settle_nothing, repr=False, compare=False)
    _handle: Any = field(default=None, repr=False, compare=False)

    def decode(self, into: type[T] | Any = Any) -> T:
        """The payload decoded into ``into`` by its content type; raises BadRequest."""
        result: T = decode(self.metadata, self.payload, into)
        return result

    async def ack(self) -> None:
        """Done with it: the group will not see it again."""
        await self._settle(self, "ack", "")

    async def nack(self) -> None:
        """Not done: deliver it again now (it counts against the retry limit)."""
        await self._settle(self, "nack", "")

    async def reject(self, reason: str) -> None:
        """It can never be handled (it does not decode, say): dead-letter it now."""
        await self._settle(self, "reject", reason)


@runtime_checkable
class EventStream(Protocol):
    """Durable topics with acknowledged, redelivered, replayable consumption.

    Every method raises :class:`EventsUnavailable` when the stream is closed or
    its backend unreachable, and :class:`~micro.errors.BadRequest` for bad input
    (an empty or malformed topic or group, a bad offset or option).
    """

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> Event:
        """Store ``message`` (encoded by content type, JSON by default; an
        :class:`Encoded` as it is) on ``topic``.

        Returns once the event is stored, with its id and timestamp; raises
        :class:`PublishError` when it was not.
        """
        ...

    def consume(
        self,
        topic: str,
        *,
        group: str | None = None,
        offset: Offset = None,
        ack_wait: float = 30.0,
        retry_limit: int = 5,
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        """Consume ``topic``: ``async with stream.consume(...) as events: async for e in events``.

        ``offset`` applies when the group is first created (a consumer without a
        group is a group of its own, created for it); later consumers of a group
        go on from where it is.
        """
        ...

    async def read(
        self, topic: str, *, since: Offset = "start", limit: int | None = None
    ) -> builtins.list[Event]:
        """Stored events of ``topic`` from ``since``, oldest first, at most ``limit``."""
        ...

    async def retain(
        self, topic: str, *, max_age: float | None = None, max_events: int | None = None
    ) -> None:
        """Keep ``topic``'s events at most ``max_age`` seconds and at most ``max_events``
        (None: no limit); older events are dropped, delivered or not."""
        ...

    async def __aenter__(self) -> EventStream: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


async def close_consumed(events: AsyncIterator[Event]) -> None:
    """Close a consumer's event generator where it stands (it never runs again)."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(RuntimeError):  # being iterated by another task right now
            await aclose()


def check_topic(topic: object) -> str:
    """``topic`` if it is a valid topic name (dot-separated tokens), else BadRequest."""
    if not isinstance(topic, str) or not topic:
        raise BadRequest(f"a topic is a non-empty string, not {topic!r}")
    if len(topic) > MAX_NAME or not _TOPIC.fullmatch(topic):
        raise BadRequest(
            f"bad topic {topic!r}: dot-separated names of at most {MAX_NAME} characters, "
            "without spaces, control characters, '*' or '>'"
        )
    return topic


def check_group(group: object) -> str | None:
    """``group`` if it is None or a valid group name, else BadRequest."""
    if group is None:
        return None
    if not isinstance(group, str) or not _GROUP.fullmatch(group) or len(group) > MAX_NAME:
        raise BadRequest(f"bad group {group!r}: letters, digits, '_' and '-' only")
    return group


def check_consume(ack_wait: float, retry_limit: int) -> None:
    """BadRequest unless ``ack_wait`` > 0 and ``retry_limit`` >= 0."""
    if not isinstance(ack_wait, int | float) or not ack_wait > 0 or math.isinf(ack_wait):
        raise BadRequest(f"ack_wait is a positive number of seconds, not {ack_wait!r}")
    if not isinstance(retry_limit, int) or isinstance(retry_limit, bool) or retry_limit < 0:
        raise BadRequest(f"retry_limit is a count from 0, not {retry_limit!r}")


def check_consume_call(
    topic: object, group: object, offset: Offset, ack_wait: float, retry_limit: int
) -> float | None:
    """Every argument of a ``consume`` checked (BadRequest if one is bad); returns the
    time to start from, as :func:`start_time` gives it."""
    check_topic(topic)
    check_group(group)
    start = start_time(offset)
    check_consume(ack_wait, retry_limit)
    return start


def check_read(topic: object, since: Offset, limit: int | None) -> float | None:
    """Every argument of a ``read`` checked (BadRequest if one is bad); returns the
    time to read from, as :func:`start_time` gives it."""
    check_topic(topic)
    start = start_time(since)
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise BadRequest(f"limit is a count from 0 or None, not {limit!r}")
    return start


def check_retention(max_age: float | None, max_events: int | None) -> None:
    if max_age is not None and (not isinstance(max_age, int | float) or not max_age > 0):
        raise BadRequest(f"max_age is a positive number of seconds or None, not {max_age!r}")
    if max_events is not None and (
        not isinstance(max_events, int) or isinstance(max_events, bool) or max_events < 1
    ):
        raise BadRequest(f"max_events is a count from 1 or None, not {max_events!r}")


def start_time(offset: Offset) -> float | None:
    """An offset as a timestamp: 0.0 for ``"start"``, None for ``"new"``/None."""
    if offset is None or offset == "new":
        return None
    if offset == "start":
        return 0.0
    if isinstance(offset, datetime):
        return offset.timestamp()
    if isinstance(offset, int | float) and not isinstance(offset, bool) and math.isfinite(offset):
        return max(float(offset), 0.0)
    raise BadRequest(f"bad offset {offset!r}: use 'start', 'new', a timestamp or a datetime")


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Metadata with lower-case keys, checked to travel as headers on every backend."""
    result: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not _META_KEY.fullmatch(key):
            raise BadRequest(f"bad metadata key {key!r}: printable ASCII, no spaces or ':'")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            raise BadRequest(f"metadata {key!r} must be a string without line breaks")
        result[key.lower()] = value
    return result


def encode_event(
    topic: str, message: Any, metadata: Mapping[str, str] | None, content_type: str | None
) -> tuple[bytes, dict[str, str]]:
    """The checked payload and metadata (content type included) of an event to publish."""
    check_topic(topic)
    meta = check_metadata(metadata)
    if isinstance(message, Encoded):
        check_metadata({CONTENT_TYPE_HEADER: message.content_type})
        body, meta[CONTENT_TYPE_HEADER] = bytes(message.payload), message.content_type
    else:
        try:
            encoded = encode(topic, message, content_type=content_type, headers=meta)
        except TypeError as exc:
            raise BadRequest(f"cannot encode the event for {topic}: {exc}") from None
        body, meta = encoded.body, dict(encoded.headers)
    if len(body) > MAX_PAYLOAD:
        raise PayloadTooLarge(f"an event of {len(body)} bytes is over the {MAX_PAYLOAD}-byte limit")
    return body, meta


def dead_metadata(event: Event, group: str | None, reason: str) -> dict[str, str]:
    """The metadata of ``event``'s copy on its dead-letter topic (why, and where it
    was), logged as a warning: a dead letter is never silent."""
    log.warning(
        "event %s of %s dead-lettered to %s%s after %d deliveries%s: %s",
        event.id,
        event.topic,
        event.topic,
        DEAD_SUFFIX,
        event.deliveries,
        f" to group {group}" if group else "",
        reason,
    )
    return {
        **event.metadata,
        "dead-topic": event.topic,
        "dead-id": event.id,
        "dead-group": group or "",
        "dead-deliveries": str(event.deliveries),
        "dead-reason": " ".join(reason.split())[:500],
    }
