"""micro on asyncio with uvloop's event loop (the ``uvloop`` extra), as anyio runs it.

The same calls as on the standard loop: unary, both streaming directions, a
1 MiB message, and a deadline; and the asyncio connection fast path is taken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest

import micro
from micro.registry.memory import MemoryRegistry
from micro.transport.aio_stream import AsyncioSocketStream, adopt

pytest.importorskip("uvloop")

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


@dataclass
class Num:
    n: int


class Echo:
    async def echo(self, data: bytes) -> bytes:
        return data

    async def slow(self, data: bytes) -> bytes:
        await anyio.sleep(30)
        return data

    async def double(self, nums: AsyncIterator[Num]) -> AsyncIterator[Num]:
        async for num in nums:
            yield Num(num.n * 2)


async def test_calls_and_streams_on_uvloop() -> None:
    import asyncio

    import uvloop

    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    registry = MemoryRegistry()
    service = micro.Service("uv", address="127.0.0.1:0", registry=registry)
    service.handle(Echo(), name="uv.Echo")
    async with service.running(), micro.Client(registry=registry) as client:
        address = str(service.address)
        for size in (100, 1024 * 1024):
            data = bytes(range(256)) * (size // 256)
            got = await client.call(
                "uv", "uv.Echo.Echo", data, bytes, content_type="application/grpc", address=address
            )
            assert got == data
        async with client.stream("uv", "uv.Echo.Double", response_type=Num) as stream:
            for i in range(100):
                await stream.send(Num(i))
                assert await stream.receive() == Num(2 * i)
        with pytest.raises(micro.errors.Timeout):
            await client.call(
                "uv",
                "uv.Echo.Slow",
                b"x",
                bytes,
                content_type="application/grpc",
                address=address,
                timeout=0.2,
            )


async def test_uvloop_connections_take_the_asyncio_fast_path() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with await anyio.connect_tcp("127.0.0.1", port) as client:
            assert isinstance(adopt(client), AsyncioSocketStream)
