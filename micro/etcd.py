"""The etcd client micro's registry, store, config and sync share.

Theory: etcd serves its v3 API twice on the client port, as gRPC and as a JSON
gateway over plain HTTP. The JSON gateway needs nothing but an HTTP client, and
httpx runs under asyncio and Trio alike, so this module speaks JSON. Keys and
values are ``bytes`` here and base64 on the wire; revisions, lease ids and
TTLs are ints here and (being 64-bit) decimal strings on the wire; fields at
their default value are left out of answers, so every read has a default.

A watch is one long POST whose response never ends: one JSON object per line,
each wrapped in ``{"result": ...}``. The first says ``created``; later ones
carry events (a PUT has no ``type``, a delete has ``"type": "DELETE"``), or
``canceled`` (with ``compact_revision`` when the start revision is gone).
Closing the response cancels the watch.

Errors are mapped here and nowhere else: a transport failure becomes
:class:`EtcdUnavailable` naming the endpoint, etcd's error JSON
``{error, message, code}`` becomes the :class:`~micro.errors.MicroError` for
its gRPC code with etcd's message as the detail.

The client is a reference-counted async context manager: the HTTP connection
pool opens on the first entry and closes on the last exit. :func:`shared_client`
gives the process's one client per endpoint, which the registry, store, sync
and config sources use unless given one, so a service on one etcd endpoint
holds one client (and one connection pool) to it, closed after its last user.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx

from .errors import GrpcStatus, MicroError, Unavailable, from_grpc, from_http
from .refcount import Users

__all__ = [
    "EtcdClient",
    "EtcdUnavailable",
    "RevisionCompacted",
    "KeyValue",
    "KeyEvent",
    "Compare",
    "Put",
    "Range",
    "Delete",
    "PutResult",
    "RangeResult",
    "DeleteResult",
    "TxnResult",
    "Lease",
    "LeaseInfo",
    "Watch",
    "prefix_end",
    "shared_client",
    "shared_clients",
]

#: etcd's default client URL
DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
#: seconds one request may take; etcd answers in milliseconds when healthy
DEFAULT_TIMEOUT = 5.0


class EtcdUnavailable(Unavailable):
    """etcd could not be reached, or a watch stream broke."""


class RevisionCompacted(MicroError):
    """The revision asked for was compacted away; resync from a fresh read."""

    default_code = 410

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted up to {compact_revision}", id="etcd")
        self.compact_revision = compact_revision


# -- records -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KeyValue:
        return cls(
            key=_unb64(data.get("key")),
            value=_unb64(data.get("value")),
            create_revision=int(data.get("create_revision", 0)),
            mod_revision=int(data.get("mod_revision", 0)),
            version=int(data.get("version", 0)),
            lease=int(data.get("lease", 0)),
        )


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A key was put or deleted. A delete's ``kv`` holds only the key and revision."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def created(self) -> bool:
        """A put that made the key (rather than changing it)."""
        return self.type == "PUT" and self.kv.version == 1


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: tuple[KeyValue, ...]
    count: int
    revision: int
    more: bool = False


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: int
    revision: int
    prev_kvs: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: tuple[PutResult | RangeResult | DeleteResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    id: int
    ttl: int  # seconds left; -1 once expired or revoked
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()


# -- transaction parts ---------------------------------------------------------

CompareTarget = Literal["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
CompareResult = Literal["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]
_TARGET_FIELD: dict[str, str] = {
    "VERSION": "version",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "VALUE": "value",
    "LEASE": "lease",
}


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction: ``target`` of ``key`` compared with ``value``."""

    key: bytes
    target: CompareTarget
    result: CompareResult
    value: int | bytes

    @classmethod
    def absent(cls, key: bytes) -> Compare:
        """The key does not exist (the basis of create-if-absent and locks)."""
        return cls(key, "CREATE", "EQUAL", 0)

    @classmethod
    def unchanged(cls, key: bytes, mod_revision: int) -> Compare:
        """The key was last written at ``mod_revision`` (compare-and-swap)."""
        return cls(key, "MOD", "EQUAL", mod_revision)

    def to_json(self) -> dict[str, Any]:
        field = _TARGET_FIELD[self.target]
        value = _b64(self.value) if isinstance(self.value, bytes) else str(self.value)
        return {"key": _b64(self.key), "target": self.target, "result": self.result, field: value}


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Range:
    key: bytes
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes
    prefix: bool = False


def _op_json(op: Put | Range | Delete) -> dict[str, Any]:
    if isinstance(op, Put):
        return {"request_put": _put_json(op.key, op.value, op.lease, False)}
    if isinstance(op, Range):
        return {"request_range": _range_json(op.key, op.prefix)}
    return {"request_delete_range": _range_json(op.key, op.prefix)}


def _response_from_json(data: dict[str, Any]) -> PutResult | RangeResult | DeleteResult:
    if "response_put" in data:
        return _put_result(data["response_put"])
    if "response_range" in data:
        return _range_result(data["response_range"])
    return _delete_result(data.get("response_delete_range", {}))


# -- the client ----------------------------------------------------------------


class EtcdClient:
    """etcd's v3 API over HTTP/JSON; ``async with EtcdClient(endpoint) as etcd:``.

    Every method raises :class:`EtcdUnavailable` when etcd cannot be reached
    and the :class:`~micro.errors.MicroError` for etcd's error otherwise.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if endpoint.startswith("etcd://"):
            endpoint = "http://" + endpoint.removeprefix("etcd://")
        elif "://" not in endpoint:
            endpoint = "http://" + endpoint
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._verify = verify
        self._http: httpx.AsyncClient | None = None
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
        # trust_env=False: a proxy set for the web must not sit between a
        # service and its etcd.
        self._http = httpx.AsyncClient(
            base_url=self.endpoint, timeout=self.timeout, verify=self._verify, trust_env=False
        )

    async def _close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            with anyio.CancelScope(shield=True):
                await http.aclose()

    # -- keys --

    async def put(
        self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False
    ) -> PutResult:
        """Set ``key`` to ``value``, bound to ``lease`` when not 0."""
        return _put_result(await self._call("kv/put", _put_json(key, value, lease, prev_kv)))

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
        body = _range_json(key, prefix)
        if limit:
            body["limit"] = str(limit)
        if revision:
            body["revision"] = str(revision)
        if keys_only:
            body["keys_only"] = True
        return _range_result(await self._call("kv/range", body))

    async def get(self, key: bytes) -> KeyValue | None:
        """The key's current value, or None."""
        kvs = (await self.range(key)).kvs
        return kvs[0] if kvs else None

    async def delete(
        self, key: bytes, *, prefix: bool = False, prev_kv: bool = False
    ) -> DeleteResult:
        """Delete the key, or every key starting with it when ``prefix``."""
        body = _range_json(key, prefix)
        if prev_kv:
            body["prev_kv"] = True
        return _delete_result(await self._call("kv/deleterange", body))

    async def txn(
        self,
        compare: Sequence[Compare],
        success: Sequence[Put | Range | Delete] = (),
        failure: Sequence[Put | Range | Delete] = (),
    ) -> TxnResult:
        """Run ``success`` if every comparison holds, else ``failure``, atomically."""
        body = {
            "compare": [c.to_json() for c in compare],
            "success": [_op_json(op) for op in success],
            "failure": [_op_json(op) for op in failure],
        }
        data = await self._call("kv/txn", body)
        return TxnResult(
            succeeded=bool(data.get("succeeded", False)),
            revision=_revision(data),
            responses=tuple(_response_from_json(r) for r in data.get("responses", [])),
        )

    async def compact(self, revision: int) -> None:
        """Forget history before ``revision``; watches from earlier revisions then fail."""
        await self._call("kv/compaction", {"revision": str(revision)})

    # -- leases --

    async def lease_grant(self, ttl: int, *, id: int = 0) -> Lease:
        """A new lease of ``ttl`` seconds (etcd may raise it to its minimum)."""
        body: dict[str, Any] = {"TTL": str(ttl)}
        if id:
            body["ID"] = str(id)
        data = await self._call("lease/grant", body)
        if data.get("error"):
            raise MicroError(str(data["error"]), id="etcd")
        return Lease(id=int(data["ID"]), ttl=int(data.get("TTL", 0)))

    async def lease_keepalive_once(self, id: int) -> int:
        """Refresh the lease; its new TTL, or 0 when it had already expired."""
        data = await self._call("lease/keepalive", {"ID": str(id)})
        return int(data.get("result", data).get("TTL", 0))

    async def lease_revoke(self, id: int) -> None:
        """End the lease and delete its keys; raises NotFound for an unknown lease."""
        await self._call("lease/revoke", {"ID": str(id)})

    async def lease_time_to_live(self, id: int, *, keys: bool = False) -> LeaseInfo:
        """The lease's remaining TTL (-1 when gone) and, if asked, its keys."""
        data = await self._call("lease/timetolive", {"ID": str(id), "keys": keys})
        return LeaseInfo(
            id=id,
            ttl=int(data.get("TTL", -1)),
            granted_ttl=int(data.get("grantedTTL", 0)),
            keys=tuple(_unb64(k) for k in data.get("keys", [])),
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
        request: dict[str, Any] = _range_json(key, prefix)
        if start_revision:
            request["start_revision"] = str(start_revision)
        if prev_kv:
            request["prev_kv"] = True
        return Watch(self._client(), self.endpoint, {"create_request": request})

    # -- plumbing --

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            raise RuntimeError("the etcd client is not open: use `async with EtcdClient(...)`")
        return self._http

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client().post("/v3/" + path, json=body)
        except httpx.RequestError as exc:
            raise _unreachable(self.endpoint, exc) from exc
        if response.status_code != 200:
            raise _error(response.status_code, response.content)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise _error(502, response.content)
        return data


class Watch:
    """An open watch: an async iterator of :class:`KeyEvent`; leaving the block cancels it."""

    def __init__(self, http: httpx.AsyncClient, endpoint: str, request: dict[str, Any]) -> None:
        self._http = http
        self._endpoint = endpoint
        self._request = request
        self._response: httpx.Response | None = None
        self._lines: AsyncIterator[str] | None = None
        self._pending: deque[KeyEvent] = deque()
        #: the store revision the watch started after (from the ``created`` answer)
        self.revision = 0

    async def __aenter__(self) -> Watch:
        # No read timeout: the answer is a stream that is quiet while nothing changes.
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        request = self._http.build_request("POST", "/v3/watch", json=self._request, timeout=timeout)
        try:
            self._response = await self._http.send(request, stream=True)
        except httpx.RequestError as exc:
            raise _unreachable(self._endpoint, exc) from exc
        try:
            if self._response.status_code != 200:
                raise _error(self._response.status_code, await self._response.aread())
            self._lines = self._response.aiter_lines()
            first = await self._next_result()
            if first is None or not first.get("created"):
                raise EtcdUnavailable(
                    f"etcd at {self._endpoint} did not start the watch", id="etcd"
                )
            self.revision = _revision(first)
            self._take_events(first)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        lines, self._lines = self._lines, None
        response, self._response = self._response, None
        aclose_lines = getattr(lines, "aclose", None)  # httpx's line iterator is a generator
        if aclose_lines is not None:
            await aclose_lines()
        if response is not None:
            await response.aclose()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> KeyEvent:
        while not self._pending:
            result = await self._next_result()
            if result is None:
                raise StopAsyncIteration
            if result.get("canceled"):
                compacted = int(result.get("compact_revision", 0))
                if compacted:
                    raise RevisionCompacted(compacted)
                reason = result.get("cancel_reason") or "no reason given"
                raise EtcdUnavailable(f"etcd at {self._endpoint} cancelled the watch: {reason}")
            self._take_events(result)
        return self._pending.popleft()

    def _take_events(self, result: dict[str, Any]) -> None:
        for event in result.get("events", []):
            prev = event.get("prev_kv")
            self._pending.append(
                KeyEvent(
                    type="DELETE" if event.get("type") == "DELETE" else "PUT",
                    kv=KeyValue.from_json(event.get("kv", {})),
                    prev_kv=KeyValue.from_json(prev) if prev else None,
                )
            )

    def _stream_error(self, error: dict[str, Any]) -> MicroError:
        code = int(error.get("grpc_code", GrpcStatus.UNKNOWN))
        detail = f"the watch on etcd at {self._endpoint} failed: {error.get('message', '')}"
        # A stopping etcd ends watches with UNAVAILABLE or, when its gateway's own
        # connection closes first, CANCELLED ("the client connection is closing"):
        # either way the server went away (our own cancellation closes the HTTP stream).
        if code in (GrpcStatus.UNAVAILABLE, GrpcStatus.CANCELLED):
            return EtcdUnavailable(detail, id="etcd")
        return from_grpc(code, detail, id="etcd")

    async def _next_result(self) -> dict[str, Any] | None:
        """The next message's ``result``, or None at the end of the stream."""
        if self._lines is None:
            return None
        try:
            async for line in self._lines:
                if not line.strip():
                    continue
                message = json.loads(line)
                if "error" in message:  # the stream failed, e.g. "transport is closing"
                    raise self._stream_error(message["error"])
                result: dict[str, Any] = message.get("result", {})
                return result
        except httpx.RequestError as exc:
            raise EtcdUnavailable(
                f"the watch stream from etcd at {self._endpoint} broke ({_describe(exc)})",
                id="etcd",
            ) from exc
        except ValueError as exc:
            raise EtcdUnavailable(
                f"etcd at {self._endpoint} sent a watch message that is not JSON", id="etcd"
            ) from exc
        return None


# -- wire helpers ----------------------------------------------------------------


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key: etcd reads "\0" as "to the end of the keyspace"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(data: Any) -> bytes:
    return base64.b64decode(data) if data else b""


def _revision(data: dict[str, Any]) -> int:
    return int(data.get("header", {}).get("revision", 0))


def _put_json(key: bytes, value: bytes, lease: int, prev_kv: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
    if lease:
        body["lease"] = str(lease)
    if prev_kv:
        body["prev_kv"] = True
    return body


def _range_json(key: bytes, prefix: bool) -> dict[str, Any]:
    body = {"key": _b64(key)}
    if prefix:
        body["range_end"] = _b64(prefix_end(key))
    return body


def _put_result(data: dict[str, Any]) -> PutResult:
    prev = data.get("prev_kv")
    return PutResult(_revision(data), KeyValue.from_json(prev) if prev else None)


def _range_result(data: dict[str, Any]) -> RangeResult:
    return RangeResult(
        kvs=tuple(KeyValue.from_json(kv) for kv in data.get("kvs", [])),
        count=int(data.get("count", 0)),
        revision=_revision(data),
        more=bool(data.get("more", False)),
    )


def _delete_result(data: dict[str, Any]) -> DeleteResult:
    return DeleteResult(
        deleted=int(data.get("deleted", 0)),
        revision=_revision(data),
        prev_kvs=tuple(KeyValue.from_json(kv) for kv in data.get("prev_kvs", [])),
    )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unreachable(endpoint: str, exc: httpx.RequestError) -> EtcdUnavailable:
    return EtcdUnavailable(f"etcd at {endpoint} is unreachable ({_describe(exc)})", id="etcd")


def _error(status: int, body: bytes) -> MicroError:
    """The MicroError for an error answer: etcd's JSON, or the HTTP status and text."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and "code" in data and ("message" in data or "error" in data):
        return from_grpc(int(data["code"]), str(data.get("message") or data["error"]), id="etcd")
    text = body.decode("utf-8", "replace").strip() or "no body"
    return from_http(status if status >= 400 else 502, f"etcd answered {status}: {text}", id="etcd")


_shared: dict[str, EtcdClient] = {}


def shared_client(endpoint: str = DEFAULT_ENDPOINT) -> EtcdClient:
    """The process's one EtcdClient for ``endpoint`` (``http://host:port``, ``https://...``,
    ``etcd://host:port`` or ``host:port``): every part naming the same endpoint gets the
    same client, opened by its first user and closed after its last."""
    client = EtcdClient(endpoint)
    return _shared.setdefault(client.endpoint, client)


def shared_clients() -> dict[str, EtcdClient]:
    """The shared clients by endpoint (a copy), to see which are open and by how many."""
    return dict(_shared)
