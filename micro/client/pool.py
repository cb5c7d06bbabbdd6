"""Connections to nodes, one multiplexed HTTP/2 connection per address.

Each connection's reader and writer run in the pool's task group (the
client's, and so the service's). A connection that fails or receives GOAWAY
stops taking new calls; the next call to that address dials a new one.
With an SSL context, connections are TLS (ALPN ``h2``) and the server's
certificate must name the host dialled, or the context's ``server_name``;
with ``verify_service``, a connection used for a call to a service by name
must also have a certificate that names the service.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from ..transport.h2_client import H2ClientConnection, connection_lost
from ..transport.listener import parse_address

__all__ = ["ConnectionPool"]

#: how long dialling a node may take before the node counts as unreachable
CONNECT_TIMEOUT = 5.0

log = logging.getLogger("micro.client")


class ConnectionPool:
    def __init__(
        self,
        tg: anyio.abc.TaskGroup,
        *,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
        verify_service: bool = False,
    ) -> None:
        self._tg = tg
        self._ssl = ssl_context
        self._server_name = server_name
        self._verify_service = verify_service and ssl_context is not None
        self._max_size = max_message_size
        self._connections: dict[str, H2ClientConnection] = {}
        #: the DNS names in the certificate of each TLS connection's server
        self._names: dict[H2ClientConnection, frozenset[str]] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def get(self, address: str, service: str | None = None) -> H2ClientConnection:
        """The connection to ``address``, dialled if need be.

        ``service``: the service the connection is for, when it was found by
        name; with ``verify_service`` the server's certificate must name it.
        """
        conn = self._connections.get(address)
        if conn is None or not conn.usable:
            lock = self._locks.setdefault(address, anyio.Lock())
            async with lock:
                conn = self._connections.get(address)
                if conn is None or not conn.usable:
                    conn = await self._dial(address)
                    self._connections[address] = conn
        if service is not None and self._verify_service:
            self._check_names(conn, address, service)
        return conn

    def _check_names(self, conn: H2ClientConnection, address: str, service: str) -> None:
        names = self._names.get(conn, frozenset())
        if service.lower() in names:
            return
        named = ", ".join(sorted(names)) or "no DNS names"
        log.warning(
            "%s is registered for service %s, but its certificate does not name it",
            address,
            service,
        )
        raise connection_lost(
            f"the certificate of {address} does not name service {service!r} "
            f"(it names {named}): that node cannot serve {service}",
            unprocessed=True,
        )

    async def _dial(self, address: str) -> H2ClientConnection:
        host, port = parse_address(address)
        if host == "0.0.0.0":
            host = "127.0.0.1"
        net: anyio.abc.ByteStream
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                if self._ssl is None:
                    net = await anyio.connect_tcp(host, port)
                else:
                    net = await anyio.connect_tcp(
                        host,
                        port,
                        ssl_context=self._ssl,
                        tls_hostname=self._server_name or host,
                        tls_standard_compatible=False,
                    )
        except (OSError, TimeoutError, anyio.BrokenResourceError) as exc:
            raise connection_lost(f"cannot connect to {address}: {exc}", unprocessed=True) from None
        conn = H2ClientConnection(net, address, max_message_size=self._max_size)
        if self._verify_service:
            self._names[conn] = _dns_names(net.extra(TLSAttribute.peer_certificate, None))
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                await self._tg.start(self._run, address, conn)
        except TimeoutError:
            conn.close()
            raise connection_lost(
                f"{address} accepted the connection but did not speak HTTP/2", unprocessed=True
            ) from None
        return conn

    async def _run(
        self,
        address: str,
        conn: H2ClientConnection,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await conn.run(task_status=task_status)
        finally:
            self._names.pop(conn, None)
            if self._connections.get(address) is conn:
                del self._connections[address]

    def close(self) -> None:
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()
        self._names.clear()


def _dns_names(cert: Mapping[str, object] | None) -> frozenset[str]:
    """The DNS alternative names of a peer certificate as ``ssl`` decodes it, lowercased."""
    alt = (cert or {}).get("subjectAltName", ())
    if not isinstance(alt, tuple):
        return frozenset()
    return frozenset(str(value).lower() for kind, value in alt if kind == "DNS")
