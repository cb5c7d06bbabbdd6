"""micro.transport.writer, aio_stream and trio_stream over real loopback connections.

Each test opens a TCP connection to itself on 127.0.0.1 through anyio, wraps
one end as the HTTP/2 drivers do (``adopt`` and a ``Writer`` over a bytearray
standing in for the protocol core's queue), and checks what the other end reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from micro.transport.aio_stream import READ_HIGH, AsyncioSocketStream, adopt
from micro.transport.trio_stream import TrioSocketStream
from micro.transport.writer import Writer

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[anyio.abc.SocketStream, anyio.abc.SocketStream]]:
    """Both ends of one loopback TCP connection."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        accepted: list[anyio.abc.SocketStream] = []
        async with anyio.create_task_group() as tg:

            async def accept() -> None:
                accepted.append(await listener.listeners[0].accept())  # type: ignore[attr-defined]

            tg.start_soon(accept)
            client = await anyio.connect_tcp("127.0.0.1", port)
        async with client, accepted[0] as server:
            yield client, server


class Queue:
    """A stand-in for the protocol core's outbound buffer."""

    def __init__(self) -> None:
        self.out = bytearray()

    def take(self) -> bytearray:
        out, self.out = self.out, bytearray()
        return out


async def read_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    got = bytearray()
    with anyio.fail_after(20):
        while len(got) < size:
            got += await stream.receive()
    return bytes(got)


async def run_writer(writer: Writer) -> None:
    while True:
        await writer.wait()
        await writer.send_queued()


async def test_adopt_wraps_plain_sockets_by_event_loop(anyio_backend: str) -> None:
    async with connected() as (client, _):
        net = adopt(client)
        kind = AsyncioSocketStream if anyio_backend == "asyncio" else TrioSocketStream
        assert isinstance(net, kind)
        assert net.extra(anyio.abc.SocketAttribute.local_address) == client.extra(
            anyio.abc.SocketAttribute.local_address
        )


async def test_flush_now_writes_without_the_task() -> None:
    async with connected() as (client, server):
        queue = Queue()
        writer = Writer(adopt(client), queue.take)
        queue.out += b"hello"
        writer.flush_now()  # no writer task runs: the bytes go from here
        assert await read_exactly(server, 5) == b"hello"


async def test_flush_soon_leaves_it_to_the_task() -> None:
    async with connected() as (client, server):
        queue = Queue()
        writer = Writer(adopt(client), queue.take)
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_writer, writer)
            queue.out += b"one "
            writer.flush_soon()
            queue.out += b"two"  # queued in the same turn: one write with the first
            assert await read_exactly(server, 7) == b"one two"
            tg.cancel_scope.cancel()


async def test_what_the_socket_does_not_take_goes_later_and_in_order() -> None:
    """More than the socket buffers hold, then more flushes: all of it, in order."""
    async with connected() as (client, server):
        queue = Queue()
        writer = Writer(adopt(client), queue.take)
        blocks = [bytes([i]) * (1024 * 1024) for i in range(1, 9)]
        expected = b"".join(blocks)
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_writer, writer)
            for block in blocks:
                queue.out += block
                writer.flush_now()  # nobody reads yet: most of this waits for the task
            assert await read_exactly(server, len(expected)) == expected
            tg.cancel_scope.cancel()


async def test_send_queued_raises_when_the_peer_is_gone() -> None:
    async with connected() as (client, server):
        queue = Queue()
        writer = Writer(adopt(client), queue.take)
        await server.aclose()
        with pytest.raises((anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)):
            with anyio.fail_after(20):
                while True:  # the first writes may still be taken by the kernel
                    queue.out += b"x" * 65536
                    writer.flush_now()
                    await writer.send_queued()
                    await anyio.sleep(0.01)


async def test_adopted_stream_reads_what_came_before_and_after(anyio_backend: str) -> None:
    async with connected() as (client, server):
        await client.send(b"early")
        assert await server.receive(2) == b"ea"  # the rest waits in anyio's stream
        net = adopt(server)
        await client.send(b"-late")
        assert await read_exactly(net, 8) == b"rly-late"


async def test_adopted_stream_pauses_reading_past_its_limit_and_loses_nothing() -> None:
    async with connected() as (client, server):
        net = adopt(server)
        size = READ_HIGH * 4
        data = bytes(range(256)) * (size // 256)
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.send, data)
            if isinstance(net, AsyncioSocketStream):
                with anyio.fail_after(20):
                    while not net._reading_paused:  # the reader has not read: it fills
                        await anyio.sleep(0.01)
            assert await read_exactly(net, size) == data


async def test_adopted_stream_sees_the_end_and_can_still_answer() -> None:
    async with connected() as (client, server):
        net = adopt(server)
        await client.send(b"last words")
        await client.send_eof()
        assert await read_exactly(net, 10) == b"last words"
        with pytest.raises(anyio.EndOfStream):
            with anyio.fail_after(20):
                await net.receive()
        await net.send(b"answer")  # half-closed by the peer: we may still write
        assert await read_exactly(client, 6) == b"answer"


async def test_adopted_stream_refuses_use_after_close() -> None:
    async with connected() as (_client, server):
        net = adopt(server)
        await net.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await net.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await net.send(b"x")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # an asyncio stream
async def test_a_receiver_gets_what_arrives_in_order_then_receive_sees_the_end(
    anyio_backend: str,
) -> None:
    async with connected() as (client, server):
        net = adopt(server)
        assert isinstance(net, AsyncioSocketStream)
        await client.send(b"queued ")
        with anyio.fail_after(20):
            while not net._chunks:  # arrived before the receiver is set
                await anyio.sleep(0.01)
        got = bytearray()
        net.set_receiver(got.extend)
        await client.send(b"pushed")
        with anyio.fail_after(20):
            while bytes(got) != b"queued pushed":
                await anyio.sleep(0.01)
        net.set_receiver(None)  # back to receive()
        await client.send(b"pulled")
        assert await read_exactly(net, 6) == b"pulled"
        net.set_receiver(got.extend)
        await client.send_eof()
        with pytest.raises(anyio.EndOfStream), anyio.fail_after(20):
            await net.receive()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # an asyncio stream
async def test_what_a_receiver_raises_comes_out_of_receive(anyio_backend: str) -> None:
    async with connected() as (client, server):
        net = adopt(server)
        assert isinstance(net, AsyncioSocketStream)

        def receiver(data: bytes) -> None:
            raise ValueError(f"cannot take {data!r}")

        net.set_receiver(receiver)
        await client.send(b"bad")
        with pytest.raises(ValueError, match="cannot take"), anyio.fail_after(20):
            await net.receive()
