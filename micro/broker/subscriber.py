"""Typed publishing and subscribing on top of a Broker.

``encode`` turns a value into a Message with the codec chosen by content type
(JSON by default, protobuf for protobuf messages, raw for bytes), the content
type carried in the message's headers. ``typed_handler`` turns a plain async
function into a broker handler that decodes each message into the type its
first parameter is annotated with; an undecodable message raises BadRequest
inside the handler, which the broker reports (topic and message id) without
ending the subscription.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any

from ..message import CONTENT_TYPE_HEADER, Message, decode, encode
from .base import Handler

__all__ = ["encode", "decode", "decoded_signature", "typed_handler", "CONTENT_TYPE_HEADER"]


def typed_handler(fn: Callable[..., Awaitable[Any]]) -> Handler:
    """A broker handler calling ``fn(value)`` or ``fn(value, message)``, decoded by annotation."""
    into, with_message = decoded_signature(fn, "subscriber", "Message")

    if into is Message:

        async def raw(message: Message) -> None:
            await fn(message)

        return raw

    async def handler(message: Message) -> None:
        value = decode(message.headers, message.body, into)
        if with_message:
            await fn(value, message)
        else:
            await fn(value)

    return handler


def decoded_signature(
    fn: Callable[..., Awaitable[Any]], kind: str, record: str
) -> tuple[Any, bool]:
    """The type ``fn``'s first parameter is annotated with (Any if none), and whether
    it takes a second, the ``record`` itself: what pub/sub subscribers and event
    consumers share. TypeError names the ``kind`` of function when it does not fit."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"{kind} {getattr(fn, '__name__', fn)!r} must be an async function")
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not 1 <= len(params) <= 2:
        raise TypeError(f"a {kind} takes the decoded {record.lower()}, and optionally the {record}")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise TypeError(f"cannot resolve the annotations of {fn!r}: {exc}") from exc
    return hints.get(params[0].name, Any), len(params) == 2
