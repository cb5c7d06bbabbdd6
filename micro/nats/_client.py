"""NatsClient: publish, subscribe, request and flush over one kept-alive connection.

Theory of operation. The client owns at most one live
:class:`~micro.nats._connection.Connection`. A supervisor task runs it and,
when it fails, reconnects with exponential backoff and jitter, trying each
server in turn; the new connection's handshake resubscribes every live
subscription. Publishers never touch the socket: they queue bytes on the
live connection, or wait up to ``timeout`` seconds for one and then fail
with :class:`~micro.broker.PublishError`. Nothing queued is carried over to a
later connection, since its publisher could not learn whether it was sent;
confirmed publishes fail with :class:`Unconfirmed` instead, and the caller
decides whether to send again.

A request waits for its reply until its deadline; one task ends the requests
still waiting at theirs, which costs less than a cancel scope per request.

A publish returns without waiting for the writer unless asked to confirm;
publishers pause only when 64 KiB are queued (to let the writer run) and
wait when 4 MiB are queued (bounded memory).

Slow consumers are held back rather than dropped (see
:mod:`micro.nats._subscription`): while the reader waits for room, nothing
else is read from the socket. The server buffers for us up to its
``max_pending`` (64 MiB by default) and its ``write_deadline`` (10 s); past
either it disconnects us as a slow consumer and drops what it held (core
NATS delivers at most once), and the client reconnects. Keep handlers
quick or buffers generous: a handler that waits for a PONG (a confirmed
publish) or a reply while its own subscription is full gets neither, and
fails after the client's ``timeout`` (the request's, for a request).

The client is a reference-counted async context manager. The first entry
connects (raising NatsUnavailable when no server answers) and starts the
supervisor in a task group of its own; the last exit waits (briefly) until
the server has processed what was queued, closes the connection and ends
every subscription. Like any task group, it is entered and left in the same
task.

It is one module past the usual size because the client's lifecycle, its
publishing, requests and subscriptions all act on the one current connection
and its reconnection (the wire protocol, the connection and a subscription's
buffer are modules of their own).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import secrets
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from ..errors import PayloadTooLarge, Timeout
from ..message import PublishError
from ..refcount import Users
from ..transport import primitives as _primitives
from . import protocol
from ._connection import (
    MAX_WRITE_BUFFER,
    Connection,
    RoundTrip,
    ServerAddress,
    open_connection,
    parse_servers,
)
from ._errors import NatsUnavailable, NoResponders, Unconfirmed
from ._subscription import Subscription
from .protocol import Msg

__all__ = ["NatsClient", "DEFAULT_URL", "shared_client", "shared_clients"]

log = logging.getLogger("micro.nats")

DEFAULT_URL = "nats://127.0.0.1:4222"
#: seconds to wait for a connection, for room to write, and for the server's PONG
DEFAULT_TIMEOUT = 10.0
#: seconds to open a TCP connection and complete the handshake with one server
DEFAULT_CONNECT_TIMEOUT = 2.0
#: keepalive: a silent server is dead after about interval x (outstanding + 1)
DEFAULT_PING_INTERVAL = 10.0
DEFAULT_MAX_OUTSTANDING_PINGS = 2
#: reconnect backoff doubles from the first to the second value, with jitter
DEFAULT_RECONNECT_WAIT = (0.05, 2.0)
#: per-subscription buffer; nats.go's defaults are 512Ki messages and 64 MiB
DEFAULT_MAX_PENDING_MSGS = 65536
DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024
#: a publisher lets the writer run once this much is queued
WRITE_CHUNK = 64 * 1024


class _Reply:
    __slots__ = ("error", "event", "msg")

    def __init__(self, event: _primitives.Event) -> None:
        self.event = event
        self.msg: Msg | None = None
        self.error: NatsUnavailable | None = None


class _Inbox(Subscription):
    """The one wildcard subscription that receives the replies to every request."""

    def __init__(self, client: NatsClient, prefix: str) -> None:
        super().__init__(client, prefix + "*", None, 1, 1)
        self._replies = client._replies

    def _put(self, msg: Msg) -> bool:
        waiter = self._replies.pop(msg.subject.rpartition(".")[2], None)
        if waiter is not None:
            waiter.msg = msg
            waiter.event.set()
        return True


class NatsClient:
    """A NATS client; ``async with NatsClient("nats://127.0.0.1:4222") as nc:``.

    ``servers`` is a URL, a comma-separated list or a sequence of URLs; each
    may carry ``user:password@`` or ``token@``. ``timeout`` bounds how long an
    operation waits for a connection, for room to write, and for the server
    to answer a PING.
    """

    def __init__(
        self,
        servers: str | Sequence[str] = DEFAULT_URL,
        *,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        max_outstanding_pings: int = DEFAULT_MAX_OUTSTANDING_PINGS,
        reconnect_wait: tuple[float, float] = DEFAULT_RECONNECT_WAIT,
        max_pending_msgs: int = DEFAULT_MAX_PENDING_MSGS,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        self.servers = parse_servers(servers)
        self.name = name
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.max_outstanding_pings = max_outstanding_pings
        self.reconnect_wait = reconnect_wait
        self.max_pending_msgs = max_pending_msgs
        self.max_pending_bytes = max_pending_bytes
        #: how many times a lost connection was replaced
        self.reconnects = 0
        self._conn: Connection | None = None
        self._connected = anyio.Event()
        self._subs: dict[int, Subscription] = {}
        self._sids = itertools.count(1)
        self._inbox: _Inbox | None = None
        self._inbox_prefix = ""
        self._replies: dict[str, _Reply] = {}
        # Requests' deadlines and tokens, in order, by timeout: the expiry task ends them.
        self._expiries: dict[float, deque[tuple[float, str]]] = {}
        self._expiry_wake: _primitives.Event | None = None
        # What makes a reply's event and a request's timeout: the running loop's own, once open.
        self._new_event: Callable[[], _primitives.Event] = anyio.Event
        self._move_on_after: Callable[[float], AbstractContextManager[Any]] = anyio.move_on_after
        self._tokens = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None
        #: the parts holding this client open: the first connects it, the last closes it
        self.users = Users()
        self._closed = True
        self._next_server = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.failure is None

    @property
    def server_info(self) -> Mapping[str, Any]:
        """The connected server's INFO (empty while disconnected)."""
        conn = self._conn
        return conn.info.options if conn is not None and conn.failure is None else {}

    # -- lifecycle --

    async def __aenter__(self) -> NatsClient:
        await self.users.enter(self._open)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.users.exit(lambda: self._close(exc_type, exc, tb))

    async def _open(self) -> None:
        self._new_event = _primitives.event_factory()
        self._move_on_after = _primitives.timeout_factory()
        self._closed = False
        try:
            conn = await self._connect_round()
        except BaseException:
            self._closed = True
            raise
        self._conn = conn
        self._connected.set()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(self._run, conn)
        tg.start_soon(self._expire_requests)
        self._tg = tg

    async def _close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        if conn is not None and conn.failure is None:
            # Let the server process what was queued or is being written
            # (best effort, bounded) before closing.
            with anyio.move_on_after(self.connect_timeout, shield=True):
                await conn.ask_pong().event.wait()
        self._closed = True
        self._connected.set()  # waiters wake, see the client closed
        for sub in list(self._subs.values()):
            sub._close()
        self._subs.clear()
        self._inbox = None
        self._fail_replies(NatsUnavailable("the NATS client was closed"))
        self._expiries.clear()
        self._expiry_wake = None
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(exc_type, exc, tb)
        self._conn = None

    async def _run(self, conn: Connection) -> None:
        """Run the connection; when it fails, reconnect, and again."""
        while True:
            self._conn = conn
            self._connected.set()
            timeout = self.timeout
            await conn.run(self.ping_interval, self.max_outstanding_pings, timeout)
            self._conn = None
            self._connected = anyio.Event()
            self._fail_replies(NatsUnavailable("connection to NATS lost before the reply"))
            log.warning("%s; reconnecting", conn.failure.detail if conn.failure else "closed")
            conn = await self._reconnect()
            self.reconnects += 1
            log.info("reconnected to NATS at %s", conn.server.url)

    async def _reconnect(self) -> Connection:
        wait, longest = self.reconnect_wait
        while True:
            try:
                return await self._connect_round()
            except NatsUnavailable as exc:
                log.debug("NATS reconnect failed: %s", exc.detail)
            await anyio.sleep(wait * random.uniform(0.5, 1.0))
            wait = min(wait * 2, longest)

    async def _connect_round(self) -> Connection:
        """Try each server once, starting after the last one used."""
        errors = []
        for _ in self.servers:
            server = self.servers[self._next_server % len(self.servers)]
            self._next_server += 1
            try:
                return await open_connection(
                    server, self._connect_options(server), self._subs, timeout=self.connect_timeout
                )
            except NatsUnavailable as exc:
                errors.append(exc.detail)
        raise NatsUnavailable("; ".join(errors))

    def _connect_options(self, server: ServerAddress) -> dict[str, Any]:
        from .. import __version__  # here: micro may still be importing when this module loads

        options: dict[str, Any] = {
            "verbose": False,
            "pedantic": False,
            "lang": "python-micro",
            "version": __version__,
            "protocol": 1,
            "headers": True,
            "no_responders": True,
            "echo": True,
        }
        if self.name:
            options["name"] = self.name
        if server.user is not None:
            options["user"] = server.user
            options["pass"] = server.password or ""
        if server.token is not None:
            options["auth_token"] = server.token
        return options

    async def _connection(self, timeout: float) -> Connection | None:
        """The live connection, waiting up to ``timeout`` for one; None if none came."""
        conn = self._conn
        if conn is not None and conn.failure is None:
            return conn
        with anyio.move_on_after(timeout):
            while not self._closed:
                await self._connected.wait()
                conn = self._conn
                if conn is not None and conn.failure is None:
                    return conn
                await anyio.sleep(0.001)  # the supervisor has yet to notice the failure
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise NatsUnavailable("the NATS client is not open: use `async with NatsClient(...)`")

    # -- publishing --

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        *,
        headers: Mapping[str, str] | bytes | None = None,
        reply: str | None = None,
        confirm: bool = False,
        timeout: float | None = None,
    ) -> None:
        """Send ``payload`` to ``subject``, with NATS ``headers`` if given (a mapping,
        or a header block made by :func:`~micro.nats.protocol.encode_headers`).

        Without ``confirm``, returns once the message is queued on a live
        connection: at most once, as a connection lost before the write loses
        it (:meth:`flush` tells). With ``confirm``, returns once the server has
        processed it (a PING/PONG round trip shared with concurrent callers).

        Raises PublishError when no connection (or no room to write) comes
        within ``timeout`` seconds (default: the client's), Unconfirmed when
        the connection fails before the server confirmed, PayloadTooLarge
        above the server's max_payload, ValueError for a bad subject or header.
        """
        if isinstance(headers, bytes):
            block = headers
        else:
            block = protocol.encode_headers(headers) if headers else b""
        if block:
            data = protocol.hpub(subject, payload, block, reply)
        else:
            data = protocol.pub(subject, payload, reply)
        conn = self._conn
        if conn is None or conn.failure is not None or len(conn.out) >= MAX_WRITE_BUFFER:
            conn = await self._writable(self.timeout if timeout is None else timeout)
        _check_size(conn, len(block) + len(payload))
        conn.write(data)
        if confirm:
            # No cancel scope per call: the connection fails (and so every
            # waiter) when a PING goes unanswered for `timeout`.
            pong = conn.ask_pong()
            await pong.event.wait()
            if pong.error is not None:
                raise Unconfirmed(
                    f"{pong.error.detail}, before the server confirmed the message", id="nats"
                )
        elif len(conn.out) >= WRITE_CHUNK:
            await anyio.lowlevel.checkpoint()

    def publish_confirmable(self, subject: str, payload: bytes, block: bytes) -> RoundTrip | None:
        """Queue ``payload`` with header ``block`` on the live connection without
        waiting, and return the round trip whose PONG confirms it (wait on its
        ``event``; its ``error`` is set if the connection failed first). None, with
        nothing queued, when there is no live connection with room: :meth:`publish`
        waits for one. Raises PayloadTooLarge and ValueError as :meth:`publish` does.

        What a confirmed publish does, for a caller that handles a lost
        confirmation itself (the NATS broker publishes again).
        """
        data = protocol.hpub(subject, payload, block) if block else protocol.pub(subject, payload)
        conn = self._conn
        if conn is None or conn.failure is not None or len(conn.out) >= MAX_WRITE_BUFFER:
            return None
        if len(block) + len(payload) > conn.max_payload:
            _check_size(conn, len(block) + len(payload))
        conn.write(data)
        return conn.ask_pong()

    async def _writable(self, timeout: float) -> Connection:
        self._check_open()
        with anyio.move_on_after(timeout):
            while True:
                conn = await self._connection(timeout)
                if conn is None:
                    break
                await conn.wait_room()
                if conn.failure is None and len(conn.out) < MAX_WRITE_BUFFER:
                    return conn
        self._check_open()
        if self.connected:
            raise PublishError(f"NATS write buffer still full after {timeout}s", id="nats")
        raise PublishError(f"not connected to NATS after {timeout}s", id="nats")

    async def flush(self, timeout: float | None = None) -> None:
        """Round trip to the server: it has processed everything queued before this call.

        Raises NatsUnavailable when not connected within ``timeout`` seconds
        (default: the client's), or when the connection fails first.
        """
        self._check_open()
        limit = self.timeout if timeout is None else timeout
        with anyio.move_on_after(limit):
            conn = await self._connection(limit)
            if conn is not None:
                pong = conn.ask_pong()
                await pong.event.wait()
                if pong.error is not None:
                    raise pong.error
                return
        self._check_open()
        if self.connected:
            raise NatsUnavailable(f"NATS did not answer a PING within {limit}s", id="nats")
        raise NatsUnavailable(f"not connected to NATS after {limit}s", id="nats")

    # -- subscribing --

    def subscribe(
        self,
        subject: str,
        *,
        queue: str | None = None,
        max_pending_msgs: int | None = None,
        max_pending_bytes: int | None = None,
    ) -> Subscription:
        """A subscription to ``subject`` (wildcards allowed), in queue group ``queue``.

        Within a queue group each message goes to one member; every
        subscription outside groups gets every message. Use as
        ``async with client.subscribe(...) as sub: async for msg in sub:``.
        Raises ValueError for a bad subject or queue name.
        """
        return Subscription(
            self,
            subject,
            queue,
            max_pending_msgs or self.max_pending_msgs,
            max_pending_bytes or self.max_pending_bytes,
        )

    async def _subscribe(self, sub: Subscription) -> None:
        self._check_open()
        sub.sid = next(self._sids)
        self._subs[sub.sid] = sub
        try:
            conn = await self._connection(self.timeout)
            if conn is None:
                self._check_open()
                raise NatsUnavailable(f"not connected to NATS after {self.timeout}s", id="nats")
            self._send_sub(conn, sub)
            await self.flush()
        except BaseException:
            self._unsubscribe(sub)
            raise

    def _send_sub(self, conn: Connection, sub: Subscription) -> None:
        if sub.sid not in conn.sids:
            conn.sids.add(sub.sid)
            conn.write(protocol.sub(sub.subject, sub.sid, sub.queue))

    async def _drain(self, sub: Subscription) -> None:
        """UNSUB, then a round trip: what the server sent before it reaches ``sub``."""
        conn = self._conn
        if conn is not None and conn.failure is None and sub.sid in conn.sids:
            conn.sids.discard(sub.sid)
            conn.write(protocol.unsub(sub.sid))
            try:
                await self.flush()
            except NatsUnavailable:
                pass  # the connection is gone, and the server's subscription with it
        self._unsubscribe(sub)

    def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.pop(sub.sid, None) is None:
            return
        conn = self._conn
        if conn is not None and conn.failure is None and sub.sid in conn.sids:
            conn.sids.discard(sub.sid)
            conn.write(protocol.unsub(sub.sid))

    # -- request/reply --

    async def request(
        self,
        subject: str,
        payload: bytes = b"",
        *,
        headers: Mapping[str, str] | bytes | None = None,
        timeout: float | None = None,
    ) -> Msg:
        """Publish with a unique reply subject and return the first reply.

        Raises Timeout when no reply comes within ``timeout`` seconds,
        NoResponders when nobody subscribes to ``subject``, PublishError or
        NatsUnavailable when there is no connection or it is lost.
        """
        limit = self.timeout if timeout is None else timeout
        self._check_open()
        prefix = self._ensure_inbox()
        token = str(next(self._tokens))
        waiter = self._replies[token] = _Reply(self._new_event())
        try:
            conn = self._conn
            if conn is not None and conn.failure is None and len(conn.out) < MAX_WRITE_BUFFER:
                # The usual case, without a cancel scope of its own: the publish
                # does not wait, and the expiry task ends the wait at the deadline.
                self._expire(limit, token)
                await self.publish(subject, payload, headers=headers, reply=prefix + token)
                await waiter.event.wait()
            else:
                with self._move_on_after(limit):
                    await self.publish(subject, payload, headers=headers, reply=prefix + token)
                    await waiter.event.wait()
        finally:
            self._replies.pop(token, None)
        if waiter.error is not None:
            raise waiter.error
        msg = waiter.msg
        if msg is None:
            raise Timeout(f"no reply on {subject} within {limit}s", id="nats")
        if msg.status == 503 and not msg.payload:
            raise NoResponders(f"no responders on {subject}", id="nats")
        return msg

    def _expire(self, timeout: float, token: str) -> None:
        """Have the expiry task end request ``token`` in ``timeout`` seconds."""
        queue = self._expiries.get(timeout)
        if queue is None:
            queue = self._expiries[timeout] = deque()
        if not queue and self._expiry_wake is not None:
            self._expiry_wake.set()  # this deadline may come before the one it waits for
        queue.append((anyio.current_time() + timeout, token))

    async def _expire_requests(self) -> None:
        """End each request still waiting at its deadline (its reply is then None).

        Requests with one timeout end in the order they were made, so a queue
        per timeout keeps them in deadline order; one task ending them all costs
        less than a cancel scope per request.
        """
        while True:
            now = anyio.current_time()
            due = math.inf
            for queue in self._expiries.values():
                while queue and queue[0][0] <= now:
                    waiter = self._replies.pop(queue.popleft()[1], None)
                    if waiter is not None:
                        waiter.event.set()
                if queue:
                    due = min(due, queue[0][0])
            wake = self._expiry_wake = self._new_event()
            with anyio.CancelScope(deadline=due):
                await wake.wait()

    def _ensure_inbox(self) -> str:
        if self._inbox is None:
            # Replies come to _INBOX.<random>.<token>; one subscription serves all.
            self._inbox_prefix = f"_INBOX.{secrets.token_hex(11)}."
            inbox = self._inbox = _Inbox(self, self._inbox_prefix)
            inbox.sid = next(self._sids)
            self._subs[inbox.sid] = inbox
            conn = self._conn
            if conn is not None and conn.failure is None:
                self._send_sub(conn, inbox)
        return self._inbox_prefix

    def _fail_replies(self, error: NatsUnavailable) -> None:
        for waiter in self._replies.values():
            waiter.error = error
            waiter.event.set()
        self._replies.clear()


def _check_size(conn: Connection, size: int) -> None:
    if size > conn.max_payload:
        raise PayloadTooLarge(
            f"message of {size} bytes exceeds the server's max_payload of {conn.max_payload}",
            id="nats",
        )


_shared: dict[tuple[tuple[ServerAddress, ...], str | None, float], NatsClient] = {}


def shared_client(
    servers: str | Sequence[str] = DEFAULT_URL,
    *,
    name: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> NatsClient:
    """The process's one NatsClient for ``servers`` (with this ``name`` and ``timeout``):
    the broker and the JetStream event stream of a service on one NATS server share one
    client and one connection, opened by its first user and closed after its last.

    The first user's task hosts the connection's task group, so the parts sharing a
    client are opened and closed in one task, last in first out, as a service does.
    """
    key = (tuple(parse_servers(servers)), name, timeout)
    client = _shared.get(key)
    if client is None:
        client = _shared[key] = NatsClient(servers, name=name, timeout=timeout)
    return client


def shared_clients() -> dict[tuple[tuple[ServerAddress, ...], str | None, float], NatsClient]:
    """The shared clients by servers, name and timeout (a copy), to see which are open."""
    return dict(_shared)
