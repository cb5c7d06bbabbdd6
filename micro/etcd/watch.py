"""A watch: one bidirectional ``Watch`` call on the client's connection.

The call's first request creates the watch; etcd answers ``created`` with the
revision the watch starts after, then sends events as they happen (a PUT or a
DELETE, whose ``kv`` holds only the key and revision), or ``canceled`` (with
``compact_revision`` when the start revision is gone). Leaving the block
resets the call, which cancels the watch in etcd. Each watch is its own
stream of the one connection, so watches never wait for each other.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from . import _proto as pb
from ._records import EtcdUnavailable, KeyEvent, KeyValue, RevisionCompacted

if TYPE_CHECKING:
    from ._call import CallStream
    from ._grpc import GrpcConnection

__all__ = ["Watch"]

_PATH = "/etcdserverpb.Watch/Watch"
_DELETE = 1  # mvccpb.Event.EventType


class Watch:
    """An open watch: an async iterator of :class:`KeyEvent`; leaving the block cancels it."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[GrpcConnection]],
        endpoint: str,
        timeout: float,
        request: dict[str, Any],
        *,
        sign_in: Callable[[GrpcConnection], Awaitable[None]] | None = None,
    ) -> None:
        self._connect = connect
        #: gets the connection a new auth token, when etcd forgot the one it had
        self._sign_in = sign_in
        self._endpoint = endpoint
        self._timeout = timeout
        self._request = request
        self._stream: CallStream | None = None
        self._pending: deque[KeyEvent] = deque()
        #: the store revision the watch started after (from the ``created`` answer)
        self.revision = 0

    async def __aenter__(self) -> Watch:
        payload = pb.encode(pb.WatchRequest, {"create_request": self._request})
        try:
            with anyio.fail_after(self._timeout):
                conn = await self._connect()
                first = await self._create(conn, payload)
                if self._sign_in is not None and _forgotten_token(first):
                    await self.aclose()
                    await self._sign_in(conn)
                    first = await self._create(conn, payload)
        except TimeoutError:
            await self.aclose()
            raise EtcdUnavailable(
                f"etcd at {self._endpoint} did not start the watch within {self._timeout:g}s",
                id="etcd",
            ) from None
        except BaseException:
            await self.aclose()
            raise
        if first is None or not first["created"]:
            await self.aclose()
            raise EtcdUnavailable(f"etcd at {self._endpoint} did not start the watch", id="etcd")
        header = first["header"]
        self.revision = int(header["revision"]) if header else 0
        if first["canceled"]:  # etcd refused the watch in the answer that created it
            await self.aclose()
            raise self._cancelled(first)
        self._take_events(first)
        return self

    async def _create(self, conn: GrpcConnection, payload: bytes) -> dict[str, Any] | None:
        self._stream = await conn.open_stream(_PATH)
        await self._stream.send(payload)
        return await self._next_response()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> KeyEvent:
        while not self._pending:
            response = await self._next_response()
            if response is None:
                raise StopAsyncIteration
            if response["canceled"]:
                raise self._cancelled(response)
            self._take_events(response)
        return self._pending.popleft()

    def _cancelled(self, response: dict[str, Any]) -> RevisionCompacted | EtcdUnavailable:
        """The error for a watch etcd cancelled: its start revision is gone, or another reason."""
        compacted = response["compact_revision"]
        if compacted:
            return RevisionCompacted(compacted)
        reason = response["cancel_reason"] or "no reason given"
        return EtcdUnavailable(f"etcd at {self._endpoint} cancelled the watch: {reason}", id="etcd")

    def _take_events(self, response: dict[str, Any]) -> None:
        for event in response["events"]:
            kv, prev = event["kv"], event["prev_kv"]
            self._pending.append(
                KeyEvent(
                    type="DELETE" if event["type"] == _DELETE else "PUT",
                    kv=KeyValue.from_wire(kv) if kv is not None else KeyValue(b""),
                    prev_kv=KeyValue.from_wire(prev) if prev is not None else None,
                )
            )

    async def _next_response(self) -> dict[str, Any] | None:
        """The next WatchResponse, or None once etcd ended the stream."""
        if self._stream is None:
            return None
        message = await self._stream.receive()
        if message is None:
            return None
        try:
            return pb.decode(pb.WatchResponse, message)
        except pb.DecodeError as exc:
            raise EtcdUnavailable(
                f"etcd at {self._endpoint} sent a broken watch message ({exc})", id="etcd"
            ) from exc


def _forgotten_token(response: dict[str, Any] | None) -> bool:
    """Whether etcd refused to create a watch for an auth token it no longer knows."""
    return (
        response is not None
        and response["canceled"]
        and "invalid auth token" in response["cancel_reason"]
    )
