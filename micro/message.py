"""Published messages: the record pub/sub carries, how a value becomes one, and the
error of a publish that was not taken.

This module is part of the floor (it needs only the codecs and the errors), so the
broker, the NATS client, the client's ``publish`` and telemetry share one message
type without importing each other. :mod:`micro.broker` re-exports all of it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .codec import for_content_type
from .codec._typed import is_protobuf
from .errors import Unavailable

__all__ = [
    "CONTENT_TYPE_HEADER",
    "DEFAULT_CONTENT_TYPE",
    "Message",
    "PublishError",
    "decode",
    "encode",
    "new_message_id",
]

#: the header carrying a message's content type
CONTENT_TYPE_HEADER = "content-type"
#: the content type of values that are neither bytes nor protobuf messages
DEFAULT_CONTENT_TYPE = "application/json"


def new_message_id() -> str:
    """128 random bits, hex: unique, without a system call per message.

    An id names a message and guards nothing, so it comes from :mod:`random`
    (seeded from the system's entropy, and again in a forked child) rather
    than ``os.urandom``.
    """
    return _random_bits(128).to_bytes(16, "big").hex()


_random_bits = random.getrandbits


@dataclass(frozen=True, slots=True, init=False)
class Message:
    """One published message: ``Message(topic, body, headers={}, id=<new>)``.

    Immutable like any frozen dataclass; made once per message on every
    publish and every delivery, so its constructor writes the slots directly
    rather than through the frozen ``__setattr__`` guard (half the cost).
    """

    topic: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    id: str = field(default_factory=new_message_id)

    def __init__(
        self,
        topic: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        id: str | None = None,
    ) -> None:
        _set_topic(self, topic)
        _set_body(self, body)
        _set_headers(self, {} if headers is None else headers)
        _set_id(self, new_message_id() if id is None else id)


# The slots' own setters: a frozen dataclass refuses attribute assignment.
_set_topic, _set_body, _set_headers, _set_id = (
    vars(Message)[name].__set__ for name in ("topic", "body", "headers", "id")
)


class PublishError(Unavailable):
    """The broker could not take the message; nothing was delivered on its behalf."""


def encode(
    topic: str,
    value: Any,
    *,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Message:
    """``value`` as a Message on ``topic``, encoded by the codec of ``content_type``
    (JSON by default, protobuf for protobuf messages, raw for bytes), the content type
    carried in the message's headers."""
    if content_type is None:
        if isinstance(value, bytes | bytearray | memoryview):
            content_type = "application/octet-stream"
        elif is_protobuf(type(value)):
            content_type = "application/protobuf"
        else:
            content_type = DEFAULT_CONTENT_TYPE
    body = for_content_type(content_type).encode(value)
    all_headers = {k.lower(): str(v) for k, v in (headers or {}).items()}
    all_headers[CONTENT_TYPE_HEADER] = content_type
    return Message(topic, body, all_headers)


def decode(headers: Mapping[str, str], body: bytes, into: Any = Any) -> Any:
    """``body`` decoded into ``into`` by the codec of the content type in ``headers``
    (JSON when there is none): how a pub/sub message and a stored event are read.
    Raises BadRequest when the body does not decode."""
    codec = for_content_type(headers.get(CONTENT_TYPE_HEADER, DEFAULT_CONTENT_TYPE))
    return codec.decode(body, into)
