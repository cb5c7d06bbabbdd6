"""The etcd client: etcd's v3 gRPC API on one HTTP/2 connection per endpoint.

Each method is one unary call (see :mod:`._grpc` for the connection), its
request and answer encoded by :mod:`._proto`; keys and values are ``bytes``,
revisions, lease ids and TTLs ints. Errors are mapped at the connection: a
broken or unreachable connection is :class:`EtcdUnavailable` naming the
endpoint, a gRPC status from etcd the :class:`~micro.errors.MicroError` for
its code, with etcd's message as the detail.

The client is a reference-counted async context manager: the first user's
entry lets it dial (on the first call), the last user's exit closes the
connection. A connection that breaks (etcd restarted) is replaced by a new one
on the next call.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import anyio
import anyio.abc

from ..errors import MicroError, Unauthorized, from_grpc
from ..refcount import Users
from . import _proto as pb
from ._call import describe
from ._grpc import GrpcConnection
from ._records import (
    Compare,
    Delete,
    DeleteResult,
    EtcdUnavailable,
    KeyValue,
    Lease,
    LeaseInfo,
    Put,
    PutResult,
    Range,
    RangeResult,
    TxnResult,
)
from ._wire import (
    delete_result,
    header_revision,
    op_fields,
    op_result,
    put_result,
    range_fields,
    range_result,
)
from .watch import Watch

__all__ = ["DEFAULT_ENDPOINT", "DEFAULT_TIMEOUT", "EtcdClient"]

#: etcd's default client URL
DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
#: seconds one request may take; etcd answers in milliseconds when healthy
DEFAULT_TIMEOUT = 5.0

_KV = "/etcdserverpb.KV/"
_LEASE = "/etcdserverpb.Lease/"


class EtcdClient:
    """etcd's v3 API over gRPC; ``async with EtcdClient(endpoint) as etcd:``.

    Every method raises :class:`EtcdUnavailable` when etcd cannot be reached
    and the :class:`~micro.errors.MicroError` for etcd's error otherwise.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        verify: ssl.SSLContext | bool = True,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        if endpoint.startswith("etcd://"):
            endpoint = "http://" + endpoint.removeprefix("etcd://")
        elif "://" not in endpoint:
            endpoint = "http://" + endpoint
        url = urlsplit(endpoint)
        if "@" in url.netloc:  # http://user:password@host:port: etcd's auth, kept out of messages
            username = username if username is not None else unquote(url.username or "")
            password = password if password is not None else unquote(url.password or "")
            host_port = url.netloc.rpartition("@")[2]
            endpoint = urlunsplit((url.scheme, host_port, url.path, url.query, url.fragment))
        self.endpoint = endpoint.rstrip("/")
        #: the etcd user calls are made as (etcd's auth), or None
        self.username = username or None
        self._password = password or ""
        self.timeout = timeout
        self._verify = verify
        self._conn: GrpcConnection | None = None
        self._dial_lock: anyio.Lock | None = None
        #: the parts holding this client open: the first opens it, the last closes it
        self.users = Users()

    async def __aenter__(self) -> EtcdClient:
        await self.users.enter(self._open)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.users.exit(self._close)

    async def _open(self) -> None:
        self._dial_lock = anyio.Lock()

    async def _close(self) -> None:
        conn, self._conn, self._dial_lock = self._conn, None, None
        if conn is not None:
            await conn.aclose()

    # -- keys --

    async def put(
        self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False
    ) -> PutResult:
        """Set ``key`` to ``value``, bound to ``lease`` when not 0."""
        request = {"key": key, "value": value, "lease": lease, "prev_kv": prev_kv}
        return put_result(await self._call("KV/Put", pb.PutRequest, request, pb.PutResponse))

    async def range(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        limit: int = 0,
        revision: int = 0,
        keys_only: bool = False,
    ) -> RangeResult:
        """The key, or every key starting with it when ``prefix``, sorted by key."""
        request = range_fields(key, prefix) | {
            "limit": limit,
            "revision": revision,
            "keys_only": keys_only,
        }
        return range_result(
            await self._call("KV/Range", pb.RangeRequest, request, pb.RangeResponse)
        )

    async def get(self, key: bytes) -> KeyValue | None:
        """The key's current value, or None."""
        kvs = (await self.range(key)).kvs
        return kvs[0] if kvs else None

    async def delete(
        self, key: bytes, *, prefix: bool = False, prev_kv: bool = False
    ) -> DeleteResult:
        """Delete the key, or every key starting with it when ``prefix``."""
        request = range_fields(key, prefix) | {"prev_kv": prev_kv}
        return delete_result(
            await self._call(
                "KV/DeleteRange", pb.DeleteRangeRequest, request, pb.DeleteRangeResponse
            )
        )

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Put | Range | Delete] = (),
        failure: Sequence[Put | Range | Delete] = (),
    ) -> TxnResult:
        """Run ``success`` if every comparison holds, else ``failure``, atomically."""
        request = {
            "compare": [c.to_wire() for c in compare],
            "success": [op_fields(op) for op in success],
            "failure": [op_fields(op) for op in failure],
        }
        data = await self._call("KV/Txn", pb.TxnRequest, request, pb.TxnResponse)
        return TxnResult(
            succeeded=data["succeeded"],
            revision=header_revision(data),
            responses=tuple(op_result(r) for r in data["responses"]),
        )

    async def compact(self, revision: int) -> None:
        """Forget history before ``revision``; watches from earlier revisions then fail."""
        request = {"revision": revision}
        await self._call("KV/Compact", pb.CompactionRequest, request, pb.CompactionResponse)

    # -- leases --

    async def lease_grant(self, ttl: int, *, id: int = 0) -> Lease:
        """A new lease of ``ttl`` seconds (etcd may raise it to its minimum)."""
        request = {"TTL": ttl, "ID": id}
        data = await self._call(
            "Lease/LeaseGrant", pb.LeaseGrantRequest, request, pb.LeaseGrantResponse
        )
        if data["error"]:
            raise MicroError(data["error"], id="etcd")
        return Lease(id=data["ID"], ttl=data["TTL"])

    async def lease_keepalive_once(self, id: int) -> int:
        """Refresh the lease; its new TTL, or 0 when it had already expired."""
        # LeaseKeepAlive is a bidirectional stream: one request, one answer, done.
        payload = pb.encode(pb.LeaseKeepAliveRequest, {"ID": id})
        conn: GrpcConnection | None = None
        try:
            with anyio.fail_after(self.timeout):
                conn = await self._connection()
                stream = await conn.open_stream(_LEASE + "LeaseKeepAlive")
                try:
                    await stream.send(payload, end=True)
                    answer = await stream.receive()
                finally:
                    await stream.aclose()
        except TimeoutError:
            await self._unanswered(conn)
            raise self._no_answer() from None
        if answer is None:
            return 0
        return int(self._decode(pb.LeaseKeepAliveResponse, answer)["TTL"])

    async def lease_revoke(self, id: int) -> None:
        """End the lease and delete its keys; raises NotFound for an unknown lease."""
        request = {"ID": id}
        await self._call(
            "Lease/LeaseRevoke", pb.LeaseRevokeRequest, request, pb.LeaseRevokeResponse
        )

    async def lease_time_to_live(self, id: int, *, keys: bool = False) -> LeaseInfo:
        """The lease's remaining TTL (-1 when gone) and, if asked, its keys."""
        request = {"ID": id, "keys": keys}
        data = await self._call(
            "Lease/LeaseTimeToLive", pb.LeaseTimeToLiveRequest, request, pb.LeaseTimeToLiveResponse
        )
        return LeaseInfo(
            id=id, ttl=data["TTL"], granted_ttl=data["grantedTTL"], keys=tuple(data["keys"])
        )

    # -- watch --

    def watch(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
    ) -> Watch:
        """Changes to the key (or prefix) after ``start_revision`` (default: from now).

        ``async with etcd.watch(k) as events: async for event in events:``.
        Entering waits until etcd confirms the watch, so no later change is
        missed. Iteration ends when etcd closes the stream, raises
        :class:`EtcdUnavailable` when the stream breaks and
        :class:`RevisionCompacted` when ``start_revision`` is gone.
        """
        request = range_fields(key, prefix) | {"start_revision": start_revision, "prev_kv": prev_kv}
        if not self.users.open:
            raise RuntimeError("the etcd client is not open: use `async with EtcdClient(...)`")
        sign_in = self._sign_in if self.username is not None else None
        return Watch(self._connection, self.endpoint, self.timeout, request, sign_in=sign_in)

    # -- plumbing --

    async def _connection(self) -> GrpcConnection:
        """The connection calls go on: the open one, or a new one if it broke."""
        lock = self._dial_lock
        if lock is None:
            raise RuntimeError("the etcd client is not open: use `async with EtcdClient(...)`")
        conn = self._conn
        if conn is not None and conn.usable:
            await conn.poll()  # notice a connection etcd closed while it was idle
            if conn.usable:
                return conn
        async with lock:
            conn = self._conn
            if conn is not None and conn.usable:
                return conn
            if conn is not None:
                await conn.retire()
            conn = await self._dial()
            try:
                if self.username is not None:
                    await self._sign_in(conn)
                if self._dial_lock is not lock:  # the client closed while dialling
                    raise EtcdUnavailable(
                        f"the client of etcd at {self.endpoint} closed", id="etcd"
                    )
            except BaseException:
                await conn.aclose()
                raise
            self._conn = conn
            return conn

    async def _sign_in(self, conn: GrpcConnection) -> None:
        """Give ``conn`` a new token for ``username`` (None when etcd has auth off)."""
        conn.token = None
        request = {"name": self.username, "password": self._password}
        payload = pb.encode(pb.AuthenticateRequest, request)
        try:
            answer = await conn.unary("/etcdserverpb.Auth/Authenticate", payload)
        except EtcdUnavailable:
            raise
        except MicroError as exc:
            if "authentication is not enabled" in exc.detail:
                return
            raise Unauthorized(
                f"etcd at {self.endpoint} refused user {self.username!r}: {exc.detail}",
                id="etcd",
            ) from exc
        conn.token = self._decode(pb.AuthenticateResponse, answer)["token"]

    async def _dial(self) -> GrpcConnection:
        url = urlsplit(self.endpoint)
        host, port = url.hostname or "127.0.0.1", url.port or 2379
        net: anyio.abc.ByteStream
        try:
            with anyio.fail_after(self.timeout):
                if url.scheme == "https":
                    net = await anyio.connect_tcp(
                        host,
                        port,
                        ssl_context=self._ssl_context(),
                        tls_hostname=host,
                        tls_standard_compatible=False,
                    )
                else:
                    net = await anyio.connect_tcp(host, port)
        except (OSError, TimeoutError, anyio.BrokenResourceError) as exc:
            raise EtcdUnavailable(
                f"etcd at {self.endpoint} is unreachable ({describe(exc)})", id="etcd"
            ) from None
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return GrpcConnection(net, self.endpoint, authority, timeout=self.timeout)

    def _ssl_context(self) -> ssl.SSLContext:
        if isinstance(self._verify, ssl.SSLContext):
            context = self._verify
        else:
            context = ssl.create_default_context()
            if not self._verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        return context

    async def _call(
        self, method: str, request: pb.Message, values: dict[str, Any], response: pb.Message
    ) -> dict[str, Any]:
        payload = pb.encode(request, values)
        path = "/etcdserverpb." + method
        conn: GrpcConnection | None = None
        try:
            with anyio.fail_after(self.timeout):
                conn = await self._connection()
                try:
                    answer = await conn.unary(path, payload)
                except Unauthorized as exc:
                    if self.username is None or "invalid auth token" not in exc.detail:
                        raise
                    # etcd forgot the token (it expires unused, and with a restart): again
                    await self._sign_in(conn)
                    answer = await conn.unary(path, payload)
        except TimeoutError:
            await self._unanswered(conn)
            raise self._no_answer() from None
        return self._decode(response, answer)

    async def _unanswered(self, conn: GrpcConnection | None) -> None:
        """A call on ``conn`` went unanswered: later calls go on a new connection, in case
        this one is dead without knowing it (calls open on it still finish there)."""
        if conn is not None and conn is self._conn:
            self._conn = None
            await conn.retire()

    def _decode(self, message: pb.Message, answer: bytes | memoryview) -> dict[str, Any]:
        try:
            return pb.decode(message, answer)
        except pb.DecodeError as exc:
            raise from_grpc(
                13, f"etcd at {self.endpoint} sent a broken answer ({exc})", id="etcd"
            ) from exc

    def _no_answer(self) -> EtcdUnavailable:
        return EtcdUnavailable(
            f"etcd at {self.endpoint} is unreachable (no answer within {self.timeout:g}s)",
            id="etcd",
        )
