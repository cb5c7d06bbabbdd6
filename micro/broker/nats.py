"""NATS as the broker: topics are subjects, queue groups are NATS queue groups.

A :class:`~micro.broker.base.Message` travels as one HPUB: the body is the
payload, its headers are NATS headers, and its id rides in ``Micro-Id`` (the
header Go Micro uses), so the subscriber sees the same message.

``publish`` returns once the server has processed the message: each publish
is followed by a PING, and the PONG that answers it confirms every PUB
written before. Concurrent publishers share one PING per socket write, so
the cost is one round trip per batch rather than per message. If the
connection is lost before the PONG, the server may or may not have the
message; the broker publishes it again on the next connection, within
``publish_timeout`` (at least once: a subscriber may see one ``Micro-Id``
twice). With no connection for ``publish_timeout`` seconds, publish raises
:class:`~micro.broker.base.PublishError`.

With ``confirm=False`` (``nats://host:4222?confirm=false``) publish returns
once the message is queued on a live connection, as core NATS clients do:
several times the throughput, at most once, as a connection lost before the
write loses what it held. Publishing still fails when no connection comes
within ``publish_timeout``.

Core NATS delivers at most once to subscribers: a message in flight to a
subscriber whose process dies is lost (JetStream is the answer to that).
Slow subscribers are held back, not dropped: see :mod:`micro.nats.client`.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc

from ..errors import BadRequest
from ..nats import DEFAULT_URL, NatsClient, NatsUnavailable, Unconfirmed, shared_client
from ..nats.protocol import encode_headers
from .base import ErrorHandler, Handler, Message, PublishError, url_options
from .dispatch import report_failure

__all__ = ["NatsBroker", "ID_HEADER", "nats_options"]

log = logging.getLogger("micro.broker")

#: the header carrying Message.id
ID_HEADER = "Micro-Id"
#: seconds publish waits for a connection and the server's confirmation
DEFAULT_PUBLISH_TIMEOUT = 10.0


def nats_options(url: str) -> tuple[str, dict[str, Any]]:
    """The server URL(s) and NatsBroker options of a ``nats://host:4222?confirm=false`` URL."""
    from ..config.values import to_bool, to_duration

    convert = {"confirm": to_bool, "publish_timeout": to_duration}
    return url.partition("?")[0], url_options(url, convert, "NATS")


class NatsBroker:
    """A Broker on NATS; ``async with NatsBroker("nats://127.0.0.1:4222") as broker:``.

    ``client`` is the :class:`~micro.nats.NatsClient` to use; otherwise the
    broker uses the process's shared client for ``url`` (one or more servers,
    comma-separated), the one the event stream on the same server uses too.
    Entering connects, raising :class:`~micro.nats.NatsUnavailable` when no
    server answers. ``confirm``:
    whether publish waits for the server to confirm each message.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT,
        confirm: bool = True,
        client: NatsClient | None = None,
        name: str | None = None,
    ) -> None:
        self.publish_timeout = publish_timeout
        self.confirm = confirm
        self.client = (
            client if client is not None else shared_client(url, name=name, timeout=publish_timeout)
        )

    async def __aenter__(self) -> NatsBroker:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.__aexit__(None, None, None)

    async def check(self) -> None:
        """A readiness check: the server answers a PING (raises NatsUnavailable if not)."""
        await self.client.flush(self.publish_timeout)

    async def publish(self, message: Message) -> None:
        try:
            block = encode_headers(message.headers, ID_HEADER, message.id)
        except ValueError as exc:
            raise BadRequest(str(exc), id="nats") from None
        confirm = self.confirm
        if confirm:
            # The usual case, waiting on the round trip itself rather than in a call.
            try:
                pong = self.client.publish_confirmable(message.topic, message.body, block)
            except ValueError as exc:
                raise BadRequest(str(exc), id="nats") from None
            if pong is not None:
                await pong.event.wait()
                if pong.error is None:
                    return
                log.info(
                    "publishing %s to %s again: %s", message.id, message.topic, pong.error.detail
                )
        deadline: float | None = None
        timeout = self.publish_timeout
        while True:
            try:
                await self.client.publish(
                    message.topic, message.body, headers=block, confirm=confirm, timeout=timeout
                )
                return
            except Unconfirmed as exc:
                # Not on the fast path: the clock starts at the first loss.
                now = anyio.current_time()
                if deadline is None:
                    deadline = now + self.publish_timeout
                timeout = deadline - now
                if timeout <= 0:
                    raise PublishError(f"{message.topic}: {exc.detail}", id="nats") from None
                log.info("publishing %s to %s again: %s", message.id, message.topic, exc.detail)
            except PublishError as exc:
                detail = exc.detail
                if not self.client.connected:
                    detail = f"not connected to NATS after {self.publish_timeout}s"
                raise PublishError(f"{message.topic}: {detail}", id="nats") from None
            except NatsUnavailable as exc:
                raise PublishError(f"{message.topic}: {exc.detail}", id="nats") from None
            except ValueError as exc:
                raise BadRequest(str(exc), id="nats") from None

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        queue: str | None = None,
        on_error: ErrorHandler | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``handler`` on each message until cancelled (or the broker closes).

        Raises NatsUnavailable when the subscription cannot be made; once
        made, it survives reconnections and handler errors.
        """
        try:
            subscription = self.client.subscribe(topic, queue=queue)
        except ValueError as exc:
            raise BadRequest(str(exc), id="nats") from None
        async with subscription as messages:
            task_status.started()
            async for msg in messages:
                # The message's id out of the headers, the rest as they came.
                headers = msg.headers
                message = Message(
                    msg.subject, msg.payload, headers, headers.pop(ID_HEADER, None) or None
                )
                try:
                    await handler(message)
                except Exception as exc:
                    await report_failure(message, exc, on_error)
