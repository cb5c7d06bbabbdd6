"""JetStream on micro's NATS client: streams, acknowledged publishes, pull consumers.

JetStream is spoken as JSON requests to ``$JS.API.*`` subjects over the same
:class:`~micro.nats.NatsClient` connection: streams are created, updated and
read with ``STREAM.*``, consumers with ``CONSUMER.*``. A JetStream publish is
a request to a subject a stream captures; the server answers once the
message is stored (a ``PubAck`` with the stream and sequence), and a
``Nats-Msg-Id`` header lets the server drop a duplicate sent again within
the stream's duplicate window, so a publish retried after a lost answer is
stored once.

A pull consumer hands out messages when asked: :meth:`JetStream.pull` sends
one ``CONSUMER.MSG.NEXT`` request (a batch size and an expiry) with replies
to an inbox subscription of the caller's, and reads messages until the batch
is full or a status message (404 no messages, 408 expired) ends the request.
Each delivered message's reply subject names it for ``+ACK``, ``-NAK`` and
``+TERM`` and carries its metadata (delivery count, sequence, time): see
:func:`message_info`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from ..errors import BadRequest, NotFound
from ._client import NatsClient
from ._errors import NatsUnavailable, NoResponders
from ._subscription import Subscription
from .protocol import Msg, encode_headers

__all__ = [
    "API_PREFIX",
    "JetStream",
    "JetStreamError",
    "MessageInfo",
    "PubAck",
    "message_info",
]

API_PREFIX = "$JS.API"
#: JetStream's error codes micro tells apart
STREAM_NOT_FOUND = 10059
CONSUMER_NOT_FOUND = 10014

_NS = 1_000_000_000


class JetStreamError(NatsUnavailable):
    """JetStream answered with an error (``err_code`` says which), or is not enabled."""

    def __init__(self, detail: str, *, err_code: int = 0, status: int = 0) -> None:
        super().__init__(detail, id="jetstream")
        self.err_code = err_code
        self.api_status = status


@dataclass(frozen=True, slots=True)
class PubAck:
    """The server stored a message: in ``stream`` at ``seq`` (``duplicate``: already there)."""

    stream: str
    seq: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """What a delivered message's reply subject says about it."""

    stream: str
    consumer: str
    deliveries: int
    stream_seq: int
    consumer_seq: int
    timestamp: float
    pending: int


def message_info(reply: str | None) -> MessageInfo:
    """The metadata in a JetStream ``$JS.ACK.…`` reply subject; BadRequest for another."""
    tokens = (reply or "").split(".")
    if len(tokens) == 9 and tokens[:2] == ["$JS", "ACK"]:
        stream, consumer, rest = tokens[2], tokens[3], tokens[4:]
    elif len(tokens) >= 11 and tokens[:2] == ["$JS", "ACK"]:  # with domain and account hash
        stream, consumer, rest = tokens[4], tokens[5], tokens[6:]
    else:
        raise BadRequest(f"not a JetStream message reply subject: {reply!r}")
    try:
        delivered, sseq, cseq, ts, pending = (int(t) for t in rest[:5])
    except ValueError:
        raise BadRequest(f"bad JetStream reply subject {reply!r}") from None
    return MessageInfo(stream, consumer, delivered, sseq, cseq, ts / _NS, pending)


def nanos(seconds: float) -> int:
    return int(seconds * _NS)


class JetStream:
    """The JetStream API over an open NatsClient; ``js = JetStream(nc)``."""

    def __init__(
        self, client: NatsClient, *, prefix: str = API_PREFIX, timeout: float | None = None
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.timeout = client.timeout if timeout is None else timeout

    async def api(self, subject: str, request: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One API request (``STREAM.CREATE.x``...); its JSON answer, or JetStreamError."""
        payload = b"" if request is None else json.dumps(request).encode()
        try:
            msg = await self.client.request(
                f"{self.prefix}.{subject}", payload, timeout=self.timeout
            )
        except NoResponders:
            raise JetStreamError(
                "JetStream is not enabled on the NATS server (start it with -js)", status=503
            ) from None
        try:
            answer = json.loads(msg.payload)
        except ValueError:
            raise JetStreamError(f"JetStream answered {subject} with bad JSON") from None
        error = answer.get("error")
        if error:
            raise JetStreamError(
                f"JetStream {subject}: {error.get('description', error)}",
                err_code=int(error.get("err_code", 0)),
                status=int(error.get("code", 0)),
            )
        if not isinstance(answer, dict):
            raise JetStreamError(f"JetStream answered {subject} with {answer!r}")
        return answer

    # -- streams --

    async def stream_info(self, name: str) -> dict[str, Any] | None:
        """The stream's info, or None when there is no such stream."""
        try:
            return await self.api(f"STREAM.INFO.{name}")
        except JetStreamError as exc:
            if exc.err_code == STREAM_NOT_FOUND:
                return None
            raise

    async def add_stream(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Create the stream ``config["name"]``; an identical one existing is no error."""
        return await self.api(f"STREAM.CREATE.{config['name']}", config)

    async def update_stream(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return await self.api(f"STREAM.UPDATE.{config['name']}", config)

    async def delete_stream(self, name: str) -> None:
        await self.api(f"STREAM.DELETE.{name}")

    async def publish(
        self,
        subject: str,
        payload: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
    ) -> PubAck:
        """Store a message; returns once the stream has it.

        Raises NotFound when no stream captures ``subject``, JetStreamError
        when the stream refuses it, and Timeout or NatsUnavailable when no
        answer comes (the message may then be stored: send it again with the
        same ``msg_id`` to be safe).
        """
        if msg_id is not None:
            block: Mapping[str, str] | bytes | None = encode_headers(
                headers or {}, "Nats-Msg-Id", msg_id
            )
        else:
            block = headers
        try:
            msg = await self.client.request(subject, payload, headers=block, timeout=self.timeout)
        except NoResponders:
            raise NotFound(f"no JetStream stream captures {subject}", id="jetstream") from None
        answer = json.loads(msg.payload or b"{}")
        error = answer.get("error")
        if error:
            raise JetStreamError(
                f"JetStream refused a message to {subject}: {error.get('description', error)}",
                err_code=int(error.get("err_code", 0)),
                status=int(error.get("code", 0)),
            )
        return PubAck(str(answer["stream"]), int(answer["seq"]), bool(answer.get("duplicate")))

    # -- consumers --

    async def consumer_info(self, stream: str, name: str) -> dict[str, Any] | None:
        """The consumer's info, or None when there is no such consumer."""
        try:
            return await self.api(f"CONSUMER.INFO.{stream}.{name}")
        except JetStreamError as exc:
            if exc.err_code == CONSUMER_NOT_FOUND:
                return None
            raise

    async def add_consumer(self, stream: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """Create a consumer: durable when ``config`` names ``durable_name``, else ephemeral."""
        request = {"stream_name": stream, "config": config}
        durable = config.get("durable_name")
        if durable:
            return await self.api(f"CONSUMER.DURABLE.CREATE.{stream}.{durable}", request)
        return await self.api(f"CONSUMER.CREATE.{stream}", request)

    async def delete_consumer(self, stream: str, name: str) -> None:
        await self.api(f"CONSUMER.DELETE.{stream}.{name}")

    def puller(
        self, stream: str, consumer: str, inbox: Subscription, *, batch: int, expires: float
    ) -> Puller:
        """Fetches of the consumer's messages into ``inbox``, a subscription of the caller's."""
        return Puller(self, stream, consumer, inbox, batch, expires)

    async def ack(self, msg: Msg) -> None:
        """Acknowledge a delivered message (the server will not deliver it again)."""
        await self._reply(msg, b"+ACK")

    async def nak(self, msg: Msg, *, delay: float | None = None) -> None:
        """Ask for a delivered message again: now, or ``delay`` seconds from now."""
        if delay is None:
            await self._reply(msg, b"-NAK")
        else:
            await self._reply(msg, b"-NAK " + json.dumps({"delay": nanos(delay)}).encode())

    async def term(self, msg: Msg) -> None:
        """Never deliver this message again, acknowledged or not."""
        await self._reply(msg, b"+TERM")

    async def _reply(self, msg: Msg, body: bytes) -> None:
        if not msg.reply:
            raise BadRequest("the message was not delivered by a JetStream consumer")
        await self.client.publish(msg.reply, body)


#: seconds past its expiry that a pull request's end may take before it is given up
LATE_END = 1.0

#: each pull request's expiry is ``expires`` times a random factor within 1 ± this
EXPIRY_SPREAD = 0.2


class Puller:
    """Pulls a consumer's messages: one pull request open at a time, answered into an inbox.

    A pull request asks for up to ``batch`` messages within about ``expires``
    seconds; the server sends what it has at once and the rest as it comes,
    then ends the request with a status (404 none, 408 expired, 409 a
    conflict). :meth:`fetch` returns as soon as messages are there (the ones
    already received), and sends the next request only once the open one is
    used up or over.

    Each request's expiry is spread by up to ±20% at random. Requests sent
    back to back with one fixed expiry end in step with a redelivery timer
    (an ``ack_wait`` twice the expiry, for one), and nats-server 2.9 mishandles
    a redelivery that comes due just as the only open request expires: it
    sends the message again later as a first delivery (a count of 1) or skips
    a count. Spread, the two meet only by rare chance.
    """

    def __init__(
        self,
        js: JetStream,
        stream: str,
        consumer: str,
        inbox: Subscription,
        batch: int,
        expires: float,
    ) -> None:
        self.js = js
        self.subject = f"{js.prefix}.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.stream = stream
        self.consumer = consumer
        self.inbox = inbox
        self.batch = batch
        self.expires = expires
        self._expected = 0  # messages the open request may still bring
        self._ends = 0.0  # when the open request expires

    async def fetch(self) -> list[Msg]:
        """Messages received for the consumer, waiting about ``expires`` seconds for one.

        Raises JetStreamError when the consumer was deleted.
        """
        now = anyio.current_time()
        if self._expected <= 0 or now >= self._ends:
            expires = self.expires * (1 + EXPIRY_SPREAD * (2 * random.random() - 1))
            request = json.dumps({"batch": self.batch, "expires": nanos(expires)})
            await self.js.client.publish(self.subject, request.encode(), reply=self.inbox.subject)
            self._expected = self.batch
            self._ends = now + expires
        got: list[Msg] = []
        # The server ends the request by ``expires``. A request whose end never
        # comes (lost with a connection, or dropped by the server: nats-server
        # 2.9 loses one that expires as a message comes due for redelivery) is
        # given up LATE_END seconds later; asking again meanwhile is harmless.
        with anyio.move_on_after(self._ends - now + min(self.js.timeout, LATE_END)):
            while not got or self.inbox.pending:
                msg = await self.inbox.__anext__()
                if msg.status is None:
                    got.append(msg)
                    self._expected -= 1
                    continue
                if msg.status in (404, 408):  # no messages / expired: the request is over
                    self._expected = 0
                    break
                if msg.status == 409:
                    self._expected = 0
                    description = msg.description or "conflict"
                    if "deleted" in description.lower():
                        raise JetStreamError(
                            f"consumer {self.consumer} of {self.stream}: {description}"
                        )
                    break
                # 100 (idle heartbeat) and others: keep reading
            else:
                return got
        if not got:
            self._expected = 0  # nothing came: ask again next time
        return got

    async def finish(self) -> list[Msg]:
        """Stop: unsubscribe the inbox once the server has stopped sending to it (which
        also ends the open request), and return the messages received but not fetched.

        Nothing is left in flight to an inbox nobody reads (where it would wait out
        ``ack_wait``), so what this returns can be given back with :meth:`JetStream.nak`
        (with a delay past the open request's expiry, at most ``expires`` times
        1 + EXPIRY_SPREAD: a message given back sooner may go to the request this
        puller left open, if the server has yet to notice it is over).
        """
        self._expected = 0
        return [msg for msg in await self.inbox.drain() if msg.status is None]
