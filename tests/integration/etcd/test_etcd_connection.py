"""The etcd client's HTTP/2 connection against a scripted gRPC server on loopback: answers
reach their own callers whatever their order, and each way etcd can end a call or the
connection (status, reset, GOAWAY) becomes the error it should."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import pytest

from micro.errors import NotFound
from micro.etcd import EtcdClient, EtcdUnavailable
from micro.etcd import _proto as pb

pytestmark = pytest.mark.anyio

#: (connection, stream id, path, request message) of the calls received and not answered
Pending = list[tuple[h2.connection.H2Connection, int, str, bytes]]
#: what the server does once a call has arrived: answer some of the pending calls
Script = Callable[[Pending], None]


def answer(conn: h2.connection.H2Connection, sid: int, message: bytes) -> None:
    conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    conn.send_data(sid, struct.pack(">BI", 0, len(message)) + message)
    conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)


def range_answer(count: int) -> bytes:
    return pb.encode(pb.RangeResponse, {"header": {"revision": 1}, "count": count})


@asynccontextmanager
async def scripted_etcd(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A gRPC server that runs ``script`` after each call arrives; yields its URL and the
    number of connections it accepted (as a one-item list)."""
    pending: Pending = []
    accepted = [0]

    async def serve(stream: anyio.abc.SocketStream) -> None:
        accepted[0] += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        bodies: dict[int, bytes] = {}
        paths: dict[int, str] = {}
        async with stream:
            await stream.send(conn.data_to_send())
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:  # after our GOAWAY: h2 takes nothing more
                    return
                for event in events:
                    if isinstance(event, h2.events.RequestReceived):
                        paths[event.stream_id] = dict(event.headers)[b":path"].decode()
                    elif isinstance(event, h2.events.DataReceived):
                        bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        sid = event.stream_id
                        pending.append((conn, sid, paths[sid], bodies.get(sid, b"")[5:]))
                        script(pending)
                await stream.send(conn.data_to_send())

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, serve)
            yield f"http://127.0.0.1:{port}", accepted
            tg.cancel_scope.cancel()


async def test_answers_in_any_order_reach_their_own_callers() -> None:
    calls = 20

    def in_reverse(pending: Pending) -> None:
        if len(pending) == calls:  # all arrived: answer the last first
            for conn, sid, _, body in reversed(pending):
                answer(conn, sid, range_answer(pb.decode(pb.RangeRequest, body)["limit"]))
            pending.clear()

    got: dict[int, int] = {}
    async with scripted_etcd(in_reverse) as (url, accepted), EtcdClient(url) as etcd:

        async def call(i: int) -> None:
            got[i] = (await etcd.range(b"k", limit=i + 1)).count

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(calls):
                    tg.start_soon(call, i)
        assert got == {i: i + 1 for i in range(calls)}
        assert accepted == [1]


async def test_a_status_becomes_the_error_for_its_code_with_etcd_s_message() -> None:
    def not_found(pending: Pending) -> None:
        conn, sid, _, _ = pending.pop()
        conn.send_headers(
            sid,
            [
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "5"),
                ("grpc-message", "etcdserver: requested lease not found %E2%9C%93"),
            ],
            end_stream=True,
        )

    async with scripted_etcd(not_found) as (url, _), EtcdClient(url) as etcd:
        with pytest.raises(NotFound) as caught:
            await etcd.lease_revoke(1)
        assert caught.value.detail == "etcdserver: requested lease not found ✓"
        assert caught.value.id == "etcd"


async def test_a_reset_call_is_unavailable_and_the_connection_carries_on() -> None:
    def reset_first(pending: Pending) -> None:
        conn, sid, _, _ = pending.pop()
        if sid == 1:
            conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
        else:
            answer(conn, sid, range_answer(7))

    async with scripted_etcd(reset_first) as (url, accepted), EtcdClient(url) as etcd:
        with pytest.raises(EtcdUnavailable, match=f"etcd at {url} reset the call"):
            await etcd.get(b"k")
        assert (await etcd.range(b"k")).count == 7
        assert accepted == [1]


async def test_after_goaway_calls_go_on_a_new_connection() -> None:
    def goaway_after_first(pending: Pending) -> None:
        conn, sid, _, _ = pending.pop()
        answer(conn, sid, range_answer(sid))
        if sid == 1:
            conn.close_connection(last_stream_id=1)  # GOAWAY, NO_ERROR: take no more calls

    async with scripted_etcd(goaway_after_first) as (url, accepted), EtcdClient(url) as etcd:
        assert (await etcd.range(b"k")).count == 1
        assert (await etcd.range(b"k")).count == 1  # stream 1 of a second connection
        assert accepted == [2]
