"""The Broker protocol: publish to topics, subscribe with or without a queue group.

A message is bytes plus string headers (the content type among them). A
subscription is a long-running part: :meth:`Broker.subscribe` runs until it
is cancelled, reporting itself started once the subscription is in place, so
a service runs each subscription as a supervised task in its task group.

Delivery: every subscriber without a queue group gets each message
(broadcast); within one queue group, each message goes to exactly one member.
A handler that raises does not end its subscription: the broker reports the
error (log, and the ``on_error`` callback) and goes on with the next message.

No silent loss, in one set of terms:

- memory and http: ``publish`` returns once every subscriber and one member
  of every queue group has *handled* the message (its handler returned);
  otherwise it raises :class:`PublishError`. Handled at least once: a
  subscriber that dies after its handler returned but before answering makes
  the publisher send the message again (a group's next member, or the next
  ``publish``), so handlers that must not repeat work check the message id.
- nats: ``publish`` returns once the NATS server has the message (confirmed
  by a PING/PONG round trip shared by concurrent publishers, and sent again
  after a lost connection: at least once to the server). Core NATS then
  delivers at most once: a subscriber that dies holding a message loses it.
  Event streams (:mod:`micro.events`) are the durable alternative.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

import anyio.abc

from ..message import Message, PublishError, new_message_id

__all__ = [
    "Message",
    "Handler",
    "ErrorHandler",
    "Broker",
    "PublishError",
    "new_message_id",
    "url_options",
]


def url_options(
    url: str, convert: Mapping[str, Callable[[str], object]], broker: str
) -> dict[str, object]:
    """A broker URL's query (``?name=value&...``) as options, each converted by ``convert``.

    ValueError names an unknown option and the known ones; a bad value raises
    its converter's ValueError.
    """
    from urllib.parse import parse_qsl

    options: dict[str, object] = {}
    for key, value in parse_qsl(url.partition("?")[2], keep_blank_values=True):
        if key not in convert:
            raise ValueError(
                f"unknown {broker} broker option {key!r} in {url!r}: use {sorted(convert)}"
            )
        options[key] = convert[key](value)
    return options


Handler = Callable[[Message], Awaitable[None]]
ErrorHandler = Callable[[Message, BaseException], Awaitable[None]]


@runtime_checkable
class Broker(Protocol):
    async def publish(self, message: Message) -> None:
        """Publish ``message`` to its topic; raises PublishError when it cannot be accepted."""
        ...

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver the topic's messages to ``handler`` until cancelled.

        Calls ``task_status.started()`` once subscribed: messages published
        after that reach this subscription.
        """
        ...

    async def __aenter__(self) -> Broker: ...

    async def __aexit__(self, *exc_info: object) -> None: ...
