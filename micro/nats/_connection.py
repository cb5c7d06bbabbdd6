"""One NATS connection: the handshake, then a reader, a writer and a keepalive.

Theory of operation. :func:`open_connection` connects, reads the server's
INFO and sends CONNECT, a SUB for every live subscription and a PING in one
write; the PONG confirms all of it. :meth:`Connection.run` then runs three
tasks. The reader feeds received bytes to the sans-IO parser and dispatches
its events by type (answering the server's PINGs). The writer sends
everything queued since its last write in one socket write, so concurrent
publishers' PUBs coalesce. The keepalive PINGs the server every
``ping_interval`` and declares it dead after ``max_outstanding_pings``
unanswered PINGs, or when any PING has waited ``pong_timeout`` for its PONG.
Only the reader and the writer touch the socket; the first failure is
recorded and raised to every caller waiting on the connection.

PONGs answer PINGs in order, so a queue of waiters pairs them up. Callers who
want a round trip (a confirmed publish, a flush) before the writer's next
write share one PING: a hundred concurrent confirmed publishes cost one round
trip.

While the reader waits for room in a full subscription it reads nothing, so
PONGs queue up behind the messages: the keepalive counts nothing while the
reader is held up, since then the slow party is us.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc

from ..transport import primitives as _primitives
from . import protocol
from ._errors import NatsUnavailable
from ._subscription import Subscription
from .protocol import PING, PONG, Err, Event, Info, Msg, Parser, Ping, Pong, ProtocolError

__all__ = ["Connection", "RoundTrip", "ServerAddress", "open_connection", "parse_servers"]

log = logging.getLogger("micro.nats")

DEFAULT_PORT = 4222
READ_SIZE = 256 * 1024
#: Queued outbound bytes past which publishers wait for the writer (bounded memory).
MAX_WRITE_BUFFER = 4 * 1024 * 1024

_NET_ERRORS = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


@dataclass(frozen=True, slots=True)
class ServerAddress:
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    token: str | None = None

    @property
    def url(self) -> str:
        """The address without credentials, for messages and logs."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats://{host}:{self.port}"


def parse_servers(servers: str | Sequence[str]) -> list[ServerAddress]:
    """``nats://[user:password@ | token@]host[:port]``: one, a list, or comma-separated."""
    urls = servers.split(",") if isinstance(servers, str) else list(servers)
    result = []
    for url in (u.strip() for u in urls):
        if not url:
            continue
        parts = urlsplit(url if "://" in url else "nats://" + url)
        if parts.scheme not in ("nats", "tcp"):
            raise ValueError(f"not a nats:// URL: {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        token = None
        if user is not None and password is None:
            user, token = None, user
        port = parts.port or DEFAULT_PORT
        result.append(ServerAddress(parts.hostname, port, user, password, token))
    if not result:
        raise ValueError("no NATS server given")
    return result


class RoundTrip:
    """One PING, and whoever waits for its PONG: ``await rt.event.wait()``, then
    ``rt.error`` is None if the server answered, the connection's failure if not."""

    __slots__ = ("error", "event", "sent")

    def __init__(self, event: _primitives.Event) -> None:
        self.event = event
        self.error: NatsUnavailable | None = None
        self.sent = 0.0


class Connection:
    """One TCP connection to a server, after a successful handshake."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        server: ServerAddress,
        parser: Parser,
        info: Info,
        subs: dict[int, Subscription],
        early: list[Event],
    ) -> None:
        self.stream = stream
        self.server = server
        self.parser = parser
        self.info = info
        #: the server's limit on a message (header block and payload), from its INFO
        self.max_payload = info.max_payload
        self.subs = subs  # the client's, by sid: shared, so new ones are seen
        self.sids: set[int] = set()  # the subscriptions this connection has sent SUB for
        self.out = bytearray()
        self.pongs: deque[RoundTrip] = deque()  # PINGs sent, oldest first
        self.next_pong: RoundTrip | None = None  # asked for; its PING goes out with the next write
        self.failure: NatsUnavailable | None = None
        self.pings_out = 0
        self.reader_blocked = False
        self.resumed_at = 0.0  # when the reader was last released by a slow subscriber
        self.last_error = ""
        self._early = early
        self._writer_idle: anyio.Event | None = None
        self._room: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._new_event: Callable[[], _primitives.Event] = _primitives.event_factory()

    # -- for callers: synchronous, the writer does the sending --

    def write(self, data: bytes) -> None:
        self.out += data
        if self._writer_idle is not None:
            self._writer_idle.set()
            self._writer_idle = None

    def ask_pong(self) -> RoundTrip:
        """A round trip covering everything queued so far; wait on its ``event``."""
        pong = self.next_pong
        if pong is None:
            pong = self.next_pong = RoundTrip(self._new_event())
            if self._writer_idle is not None:
                self._writer_idle.set()
                self._writer_idle = None
        return pong

    async def wait_room(self) -> None:
        """Wait until the writer has taken the queue (or the connection failed)."""
        while len(self.out) >= MAX_WRITE_BUFFER and self.failure is None:
            if self._room is None:
                self._room = anyio.Event()  # one for every waiting publisher
            await self._room.wait()

    # -- the tasks --

    async def run(self, ping_interval: float, max_outstanding: int, pong_timeout: float) -> None:
        """Read, write and keep alive until the connection fails or is cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._write_loop)
                tg.start_soon(self._keepalive, ping_interval, max_outstanding, pong_timeout)
                await self._read_loop()
                tg.cancel_scope.cancel()
        finally:
            self.fail(NatsUnavailable(f"connection to {self.server.url} closed"))
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _read_loop(self) -> None:
        handlers: dict[type, Callable[[Any], None]] = {
            Ping: self._on_ping,
            Pong: self._on_pong,
            Info: self._on_info,
            Err: self._on_err,
        }
        subs = self.subs
        events, self._early = self._early, []
        while True:
            for event in events:
                if type(event) is Msg:
                    sub = subs.get(event.sid)
                    if sub is not None and not sub._put(event):
                        self.reader_blocked = True
                        try:
                            await sub._wait_room()
                        finally:
                            self.reader_blocked = False
                            self.resumed_at = anyio.current_time()
                        sub._put(event)
                else:
                    handler = handlers.get(type(event))
                    if handler is not None:
                        handler(event)
            try:
                data = await self.stream.receive(READ_SIZE)
            except _NET_ERRORS as exc:
                why = self.last_error or repr(exc)
                self.fail(NatsUnavailable(f"connection to {self.server.url} lost: {why}"))
                return
            self.pings_out = 0
            try:
                events = self.parser.feed(data)
            except ProtocolError as exc:
                self.fail(NatsUnavailable(f"protocol error from {self.server.url}: {exc}"))
                return

    def _on_ping(self, event: Ping) -> None:
        self.write(PONG)

    def _on_pong(self, event: Pong) -> None:
        if self.pongs:
            self.pongs.popleft().event.set()

    def _on_info(self, event: Info) -> None:
        self.info = event
        self.max_payload = event.max_payload
        if event.options.get("ldm"):
            log.info("NATS server %s is shutting down (lame duck mode)", self.server.url)

    def _on_err(self, event: Err) -> None:
        # Permission errors leave the connection open; the others close it next.
        self.last_error = event.message
        log.warning("NATS server %s: -ERR %s", self.server.url, event.message)

    async def _write_loop(self) -> None:
        while True:
            if not self.out and self.next_pong is None:
                event = self._writer_idle = anyio.Event()
                await event.wait()
            pong, self.next_pong = self.next_pong, None
            if pong is not None:
                self._queue_ping(pong)
            data, self.out = self.out, bytearray()
            if self._room is not None:
                self._room.set()
                self._room = None
            try:
                await self.stream.send(bytes(data))
            except _NET_ERRORS as exc:
                self.fail(NatsUnavailable(f"connection to {self.server.url} lost: {exc!r}"))
                return

    def _queue_ping(self, pong: RoundTrip) -> None:
        pong.sent = anyio.current_time()
        self.pongs.append(pong)
        self.write(PING)

    async def _keepalive(self, interval: float, max_outstanding: int, pong_timeout: float) -> None:
        tick = min(interval, pong_timeout / 4)
        next_ping = anyio.current_time() + interval
        while True:
            await anyio.sleep(tick)
            now = anyio.current_time()
            if self.reader_blocked:
                # PONGs wait behind messages a slow subscriber has not taken:
                # not the server's fault, but whoever waits for one gives up.
                self._expire(now - pong_timeout)
                self.pings_out = 0
                next_ping = now + interval
                continue
            if self.pongs and now - max(self.pongs[0].sent, self.resumed_at) > pong_timeout:
                why = f"{self.server.url} did not answer a PING within {pong_timeout}s"
                self.fail(NatsUnavailable(why))
                return
            if now < next_ping:
                continue
            next_ping = now + interval
            if self.pings_out >= max_outstanding:
                why = f"{self.server.url} did not answer {max_outstanding} PINGs, {interval}s apart"
                self.fail(NatsUnavailable(why))
                return
            self.pings_out += 1
            self._queue_ping(RoundTrip(self._new_event()))

    def _expire(self, cutoff: float) -> None:
        """Fail the waiters of PINGs sent before ``cutoff``; their PONGs will still come."""
        for pong in self.pongs:
            if pong.sent >= cutoff:
                break
            if not pong.event.is_set():
                pong.error = NatsUnavailable(
                    "no PONG in time: the connection's reader is held up by a slow subscriber"
                )
                pong.event.set()

    def fail(self, error: NatsUnavailable) -> None:
        """Record the connection's end once; fail everyone waiting on it."""
        if self.failure is not None:
            return
        self.failure = error
        pongs = list(self.pongs)
        if self.next_pong is not None:
            pongs.append(self.next_pong)
        self.pongs.clear()
        self.next_pong = None
        for pong in pongs:
            pong.error = error
            pong.event.set()
        for event in (self._room, self._writer_idle):
            if event is not None:
                event.set()
        if self._scope is not None:
            self._scope.cancel()


async def open_connection(
    server: ServerAddress,
    options: dict[str, Any],
    subs: dict[int, Subscription],
    *,
    timeout: float,
) -> Connection:
    """Connect and handshake within ``timeout``; raises NatsUnavailable naming the server."""
    stream: anyio.abc.ByteStream | None = None
    parser = Parser()
    events: deque[Event] = deque()
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(server.host, server.port)
            info = await _next_event(stream, parser, events)
            if not isinstance(info, Info):
                raise ProtocolError(f"expected INFO, got {type(info).__name__}")
            if info.options.get("tls_required"):
                raise NatsUnavailable(f"{server.url} requires TLS, which is not supported yet")
            if not info.headers:
                raise NatsUnavailable(f"{server.url} does not support headers (NATS < 2.2)")
            live = list(subs.values())
            greeting = [protocol.connect(options)]
            greeting += [protocol.sub(s.subject, s.sid, s.queue) for s in live]
            greeting.append(PING)
            await stream.send(b"".join(greeting))
            while True:
                event = await _next_event(stream, parser, events)
                if isinstance(event, Pong):
                    break
                if isinstance(event, Err):
                    raise NatsUnavailable(f"{server.url} refused the connection: {event.message}")
                if isinstance(event, Ping):
                    await stream.send(PONG)
                elif isinstance(event, Info):
                    info = event
    except BaseException as exc:
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
        if isinstance(exc, TimeoutError):
            raise NatsUnavailable(f"{server.url}: no connection within {timeout}s") from None
        if isinstance(exc, (ProtocolError, *_NET_ERRORS)):
            raise NatsUnavailable(f"cannot connect to {server.url}: {exc!r}") from None
        raise
    conn = Connection(stream, server, parser, info, subs, list(events))
    conn.sids.update(s.sid for s in live)
    return conn


async def _next_event(stream: anyio.abc.ByteStream, parser: Parser, events: deque[Event]) -> Event:
    while not events:
        events.extend(parser.feed(await stream.receive(READ_SIZE)))
    return events.popleft()
