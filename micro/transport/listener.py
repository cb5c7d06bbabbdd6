"""The listener: one port, HTTP/2 and HTTP/1.1 told apart by the first bytes.

A connection that starts with the HTTP/2 client preface is HTTP/2 (h2c with
prior knowledge); anything else is handed to the HTTP/1.1 driver, which
answers garbage with 400 and closes. Each connection runs as a task in the
listener's task group. :meth:`Listener.drain` stops accepting, closes the
listening socket, and asks every open connection to finish its calls.

With an SSL context, each connection first completes a TLS handshake (ALPN
``h2`` or ``http/1.1``) within the same first-bytes timeout; a peer that
speaks plain text or fails the handshake (no client certificate under mutual
TLS, one from another CA) is dropped, a plain HTTP/1.1 request with a 400
saying so, and the listener goes on serving.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

from .. import context
from .dispatch import Dispatcher
from .h1_server import H1ServerConnection
from .h2_server import H2ServerConnection

__all__ = ["Listener", "parse_address", "PREFACE"]

log = logging.getLogger("micro.transport")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: a connection that sends nothing for this long before its first bytes is dropped
PREFACE_TIMEOUT = 10.0


def parse_address(address: str) -> tuple[str, int]:
    """``":8080"`` -> ``("0.0.0.0", 8080)``; ``"127.0.0.1:0"``; ``"[::1]:80"``."""
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"address {address!r} needs a port, as in ':8080' or '127.0.0.1:0'")
    host = host.strip("[]") or "0.0.0.0"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"invalid port in address {address!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number} of address {address!r} is not in 0-65535")
    return host, number


def listen_error(host: str, port: int, exc: OSError) -> OSError:
    """``exc`` as ``cannot listen on host:port: address already in use`` (same errno)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return OSError(exc.errno, f"cannot listen on {where}: {reason[:1].lower()}{reason[1:]}")


#: the first byte of a TLS handshake record
_TLS_HANDSHAKE = 0x16
_PLAIN_TO_TLS_BODY = (
    b'{"id": "", "code": 400, "detail": "this port speaks TLS", "status": "Bad Request"}\n'
)
_PLAIN_TO_TLS = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_PLAIN_TO_TLS_BODY), _PLAIN_TO_TLS_BODY)
)


class Listener:
    def __init__(
        self, server: Dispatcher[Any], address: str, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._server = server
        self._ssl = ssl_context
        self._host, self._port = parse_address(address)
        self._connections: set[H1ServerConnection | H2ServerConnection] = set()
        self._accept_scope: anyio.CancelScope | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._sniffing: set[anyio.CancelScope] = set()
        self._closed = anyio.Event()
        self._draining = False
        self.address = ""

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[str] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, report the bound ``host:port``, and serve until cancelled or drained.

        Raises OSError ``cannot listen on host:port: <reason>`` when the port cannot be bound.
        """
        try:
            listener = await anyio.create_tcp_listener(
                local_host=self._host, local_port=self._port, reuse_port=False
            )
        except OSError as exc:
            raise listen_error(self._host, self._port, exc) from exc
        try:
            await self._serve(listener, task_status)
        finally:
            self._closed.set()

    async def _serve(
        self,
        listener: anyio.abc.Listener[anyio.abc.SocketStream],
        task_status: anyio.abc.TaskStatus[str],
    ) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            sockname = listener.extra(anyio.abc.SocketAttribute.local_address)
            host, port = sockname[0], sockname[1]
            self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                with anyio.CancelScope() as self._accept_scope:
                    async with anyio.create_task_group() as accepting:
                        for sub in listener.listeners:  # type: ignore[attr-defined]
                            accepting.start_soon(self._accept_loop, sub, tg)
                        task_status.started(self.address)
            finally:
                # Close the port as soon as we stop accepting, so new clients
                # are refused (and know to go elsewhere) instead of queueing.
                with anyio.CancelScope(shield=True):
                    await listener.aclose()

    async def _accept_loop(
        self, listener: anyio.abc.SocketListener, tg: anyio.abc.TaskGroup
    ) -> None:
        while True:
            try:
                net = await listener.accept()
            except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                log.warning("accept failed: %s", exc)
                await anyio.sleep(0.1)
                continue
            tg.start_soon(self._serve_connection, net)

    async def _serve_connection(self, tcp: anyio.abc.SocketStream) -> None:
        net: anyio.abc.ByteStream = tcp
        try:
            prefix = b""
            with anyio.move_on_after(PREFACE_TIMEOUT) as scope:
                self._sniffing.add(scope)
                if self._draining:
                    scope.cancel()
                if self._ssl is not None:
                    secured = await self._handshake(tcp, self._ssl)
                    if secured is None:
                        return
                    net = secured
                while len(prefix) < len(PREFACE) and PREFACE.startswith(prefix):
                    try:
                        chunk = await net.receive(65536)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        await net.aclose()
                        return
                    prefix += chunk
            self._sniffing.discard(scope)
            if not prefix or self._draining:
                await net.aclose()
                return
        except BaseException:
            with anyio.CancelScope(shield=True):
                await net.aclose()
            raise
        try:
            net.extra(anyio.abc.SocketAttribute.raw_socket).setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        except (OSError, anyio.TypedAttributeLookupError):
            pass
        # Calls on this connection (its tasks inherit the context) can know
        # whom its verified client certificate names, with mutual TLS.
        context._set_peer_identity(_certificate_identity(net))
        conn: H1ServerConnection | H2ServerConnection
        if prefix.startswith(PREFACE):
            conn = H2ServerConnection(net, self._server, prefix)
        else:
            conn = H1ServerConnection(net, self._server, prefix)
        self._connections.add(conn)
        try:
            await conn.serve()
        except Exception:
            # A bug met on one connection must not take the listener down with it.
            log.exception("connection from %s failed", _peer(net))
        finally:
            self._connections.discard(conn)

    async def _handshake(
        self, tcp: anyio.abc.SocketStream, context: ssl.SSLContext
    ) -> TLSStream | None:
        """TLS on ``tcp``, or ``None`` (and ``tcp`` closed) when the peer cannot do it."""
        try:
            first = await tcp.receive(1)
            if first[0] != _TLS_HANDSHAKE:
                log.info("plain-text connection from %s to a TLS port refused", _peer(tcp))
                await _refuse_plain_text(tcp, first)
                return None
            replayed = _Replay(tcp, first)
            return await _ServerTLSStream.wrap(
                replayed, server_side=True, ssl_context=context, standard_compatible=False
            )
        except (anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            log.info("TLS handshake with %s failed: %s", _peer(tcp), exc)
            await tcp.aclose()
            return None

    def stop_accepting(self) -> None:
        if self._accept_scope is not None:
            self._accept_scope.cancel()

    def drain(self) -> None:
        """Stop accepting and ask every connection to finish and close."""
        self._draining = True
        self.stop_accepting()
        for scope in self._sniffing:
            scope.cancel()
        for conn in list(self._connections):
            conn.drain()

    async def wait_closed(self) -> None:
        """Return once the listener and all its connections are closed."""
        await self._closed.wait()

    def close(self) -> None:
        """Drop every connection now."""
        self.stop_accepting()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()


#: SETTINGS, then GOAWAY with INADEQUATE_SECURITY and a reason, for h2c clients
_GOAWAY_DEBUG = b"this port speaks TLS"
_H2_PLAIN_TO_TLS = (
    b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    + (8 + len(_GOAWAY_DEBUG)).to_bytes(3, "big")
    + b"\x07\x00\x00\x00\x00\x00"
    + b"\x00\x00\x00\x00\x00\x00\x00\x0c"
    + _GOAWAY_DEBUG
)


async def _refuse_plain_text(tcp: anyio.abc.SocketStream, first: bytes) -> None:
    """Tell a plain-text HTTP/1.1 or h2c client that this port speaks TLS, and close."""
    try:
        if first.isalpha():
            data = first + await tcp.receive(len(PREFACE))
            await tcp.send(_H2_PLAIN_TO_TLS if data.startswith(PREFACE[:4]) else _PLAIN_TO_TLS)
            # Read what the peer still sends before closing, so the kernel does
            # not reset the connection under the answer.
            await tcp.send_eof()
            with anyio.move_on_after(1):
                while await tcp.receive():
                    pass
    except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        pass
    finally:
        await tcp.aclose()


def _certificate_identity(net: anyio.abc.ByteStream) -> str | None:
    """The common name of the peer's verified certificate, if it presented one."""
    cert = net.extra(TLSAttribute.peer_certificate, None)
    subject = (cert or {}).get("subject", ())
    for rdn in subject if isinstance(subject, tuple) else ():
        for pair in rdn:
            if isinstance(pair, tuple) and pair[0] == "commonName":
                return str(pair[1])
    return None


class _ServerTLSStream(TLSStream):
    """A TLS stream whose ``send_eof`` reports a session already gone as closed.

    AnyIO's cannot half-close a TLS session and says so, but once the session
    is gone it fails with TypeError instead; the HTTP/2 driver expects a
    closed-resource error then.
    """

    async def send_eof(self) -> None:
        if self.extra(TLSAttribute.tls_version, None) is None:
            raise anyio.ClosedResourceError
        await super().send_eof()


class _Replay(anyio.abc.ByteStream):
    """A byte stream that first gives back bytes already read from it."""

    def __init__(self, inner: anyio.abc.SocketStream, head: bytes) -> None:
        self._inner = inner
        self._head = head

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return await self._inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._inner.send(item)

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._inner.extra_attributes


def _peer(net: anyio.abc.ByteStream) -> str:
    try:
        return str(net.extra(anyio.abc.SocketAttribute.remote_address))
    except Exception:
        return "?"
