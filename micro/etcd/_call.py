"""One gRPC call on the etcd connection, and the errors its status maps to.

A call's messages arrive in its inbox as the connection's reader dispatches
them; its status comes in the trailers (or, for a call that fails at once, in
the only headers). gRPC statuses from etcd become the :class:`MicroError` for
their code with etcd's message as the detail, except two that have an etcd
meaning of their own: UNAVAILABLE is :class:`EtcdUnavailable`, and a read at a
compacted revision is :class:`RevisionCompacted`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ..errors import GrpcStatus, MicroError, from_grpc, from_http
from ..transport.framing import MessageDecoder, Payload, encode_message
from ..transport.h2conn import H2Error
from ..transport.headers import decode_grpc_message
from ._records import EtcdUnavailable, RevisionCompacted

if TYPE_CHECKING:
    from ._grpc import GrpcConnection

__all__ = ["MAX_MESSAGE_SIZE", "CallStream", "describe", "grpc_error", "is_grpc"]

#: etcd's own clients accept answers of any size; a range over many keys is large
MAX_MESSAGE_SIZE = 512 * 1024 * 1024


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def grpc_error(code: int, message: str) -> MicroError:
    """The error for a gRPC status from etcd, with etcd's message as the detail."""
    if code == GrpcStatus.UNAVAILABLE:  # no leader, stopping, ...
        return EtcdUnavailable(message, id="etcd")
    if code == GrpcStatus.OUT_OF_RANGE and "required revision has been compacted" in message:
        return RevisionCompacted(0, message)
    return from_grpc(code, message, id="etcd")


#: how much of an answer that is not gRPC is kept for its error message
BODY_KEPT = 1024


def is_grpc(headers: list[tuple[str, str]]) -> bool:
    """Whether response headers start a gRPC answer (rather than, say, a proxy's page)."""
    fields = dict(headers)
    return fields.get(":status") == "200" and fields.get("content-type", "").startswith(
        "application/grpc"
    )


class CallStream:
    """One call on the connection: send messages, receive messages, then the status."""

    __slots__ = (
        "_conn",
        "body",
        "decoder",
        "done",
        "error",
        "headers",
        "inbox",
        "sid",
        "trailers",
        "unacked",
    )

    def __init__(self, conn: GrpcConnection, sid: int) -> None:
        self._conn = conn
        self.sid = sid
        self.headers: list[tuple[str, str]] = []
        self.trailers: list[tuple[str, str]] = []
        self.inbox: deque[Payload] = deque()
        self.decoder = MessageDecoder(MAX_MESSAGE_SIZE)
        #: the start of an answer that is not gRPC (a proxy's error page), for the error
        self.body: bytearray | None = None
        self.unacked = 0
        self.done = False
        self.error: MicroError | None = None

    async def send(self, payload: bytes, *, end: bool = False) -> None:
        """Send one message (and half-close after it when ``end``), within etcd's window."""
        conn, h2conn, sid = self._conn, self._conn._h2, self.sid
        view = memoryview(encode_message(payload))
        while True:
            self._raise_if_done()
            try:
                size = min(h2conn.local_flow_control_window(sid), h2conn.max_outbound_frame_size)
                if size >= len(view):
                    h2conn.send_data(sid, view, end_stream=end)
                    break
                if size > 0:
                    h2conn.send_data(sid, view[:size])
                    view = view[size:]
                    continue
            except H2Error:
                self._raise_if_done()
                raise EtcdUnavailable(
                    f"etcd at {conn.endpoint} closed the call", id="etcd"
                ) from None
            await conn.flush()
            await conn.wait(lambda: self.done or h2conn.local_flow_control_window(sid) > 0)
        await conn.flush()

    async def receive(self) -> Payload | None:
        """The next message; None once the call ended well. Raises the call's error."""
        conn = self._conn
        await conn.wait(lambda: bool(self.inbox) or self.done)
        if self.inbox:
            message = self.inbox.popleft()
            if self.unacked:
                conn.give_back(self)
                await conn.flush()
            return message
        if self.error is not None:
            raise self.error
        status_error = self._status_error()
        if status_error is not None:
            raise status_error
        return None

    async def aclose(self) -> None:
        """Forget the call, resetting it first if it is still open (the caller left early)."""
        await self._conn.forget(self)

    def _raise_if_done(self) -> None:
        if self.done:
            raise self.error or EtcdUnavailable(
                f"etcd at {self._conn.endpoint} ended the call", id="etcd"
            )

    def _field(self, name: str) -> str | None:
        for key, value in (*self.trailers, *self.headers):
            if key == name:
                return value
        return None

    def _status_error(self) -> MicroError | None:
        if not is_grpc(self.headers):
            status = self._field(":status") or "no status"
            content_type = self._field("content-type") or ""
            code = int(status) if status.isdigit() else 502
            text = bytes(self.body or b"").decode("utf-8", "replace").strip() or "no body"
            return from_http(
                code if code >= 400 else 502,
                f"etcd at {self._conn.endpoint} answered {status} "
                f"({content_type or 'no content type'}): {text}",
                id="etcd",
            )
        grpc_status = self._field("grpc-status")
        if grpc_status is None:
            return from_grpc(
                13, f"etcd at {self._conn.endpoint} ended a call without a status", id="etcd"
            )
        if grpc_status == "0":
            return None
        code = int(grpc_status) if grpc_status.isdigit() else 2
        return grpc_error(code, decode_grpc_message(self._field("grpc-message") or ""))
