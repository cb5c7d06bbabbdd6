"""Connections to nodes, one multiplexed HTTP/2 connection per address.

Each connection's reader and writer run in the pool's task group (the
client's, and so the service's). A connection that fails or receives GOAWAY
stops taking new calls; the next call to that address dials a new one.
With an SSL context, connections are TLS (ALPN ``h2``) and the server's
certificate must name the host dialled, or the context's ``server_name``.
"""

from __future__ import annotations

import ssl

import anyio
import anyio.abc

from ..transport.h2_client import H2ClientConnection, connection_lost
from ..transport.listener import parse_address

__all__ = ["ConnectionPool"]

#: how long dialling a node may take before the node counts as unreachable
CONNECT_TIMEOUT = 5.0


class ConnectionPool:
    def __init__(
        self,
        tg: anyio.abc.TaskGroup,
        *,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        self._tg = tg
        self._ssl = ssl_context
        self._server_name = server_name
        self._max_size = max_message_size
        self._connections: dict[str, H2ClientConnection] = {}
        self._locks: dict[str, anyio.Lock] = {}

    async def get(self, address: str) -> H2ClientConnection:
        conn = self._connections.get(address)
        if conn is not None and conn.usable:
            return conn
        lock = self._locks.setdefault(address, anyio.Lock())
        async with lock:
            conn = self._connections.get(address)
            if conn is not None and conn.usable:
                return conn
            conn = await self._dial(address)
            self._connections[address] = conn
            return conn

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
            if self._connections.get(address) is conn:
                del self._connections[address]

    def close(self) -> None:
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()
