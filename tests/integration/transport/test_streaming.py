"""Streaming calls of all four kinds, their end, errors, cancellation and backpressure."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import httpx
import pytest

import micro
from micro.registry import MemoryRegistry

from ..conftest import Greeter, Req, Resp

pytestmark = pytest.mark.anyio


@dataclass
class Num:
    value: int


@dataclass
class Blob:
    data: bytes


class Numbers:
    def __init__(self) -> None:
        self.produced = 0
        self.outcomes: list[str] = []

    async def count(self, req: Num) -> AsyncIterator[Num]:
        for i in range(req.value):
            yield Num(i)

    async def total(self, reqs: AsyncIterator[Num]) -> Num:
        return Num(sum([r.value async for r in reqs]))

    async def double(self, reqs: AsyncIterator[Num]) -> AsyncIterator[Num]:
        async for r in reqs:
            yield Num(r.value * 2)

    async def explicit(self, stream: micro.Stream[Num, Num]) -> None:
        await stream.send(Num(-1))  # speak first
        async for r in stream:
            await stream.send(Num(r.value + 1))
            await stream.send(Num(r.value + 2))

    async def fail_midway(self, req: Num) -> AsyncIterator[Num]:
        yield Num(1)
        yield Num(2)
        raise micro.NotFound("ran out of numbers")

    async def crash_midway(self, req: Num) -> AsyncIterator[Num]:
        yield Num(1)
        raise RuntimeError("secret")

    async def forever(self, req: Blob) -> AsyncIterator[Blob]:
        try:
            while True:
                self.produced += 1
                yield req
        except BaseException:
            self.outcomes.append("cancelled")
            raise

    async def sink(self, reqs: AsyncIterator[Blob]) -> Num:
        n = 0
        try:
            async for _ in reqs:
                n += 1
                await anyio.sleep(3600)  # a consumer that never keeps up
        except BaseException:
            self.outcomes.append("cancelled")
            raise
        return Num(n)

    async def echo_blobs(self, reqs: AsyncIterator[Blob]) -> AsyncIterator[Blob]:
        async for r in reqs:
            yield r


@pytest.fixture
async def numbers(registry: MemoryRegistry) -> AsyncIterator[Numbers]:
    service = micro.Service("numbers", address="127.0.0.1:0", registry=registry)
    handler = Numbers()
    service.handle(handler)
    service.handle(Greeter())
    async with service.running():
        yield handler


async def test_server_stream_ends_cleanly(numbers: Numbers, client: micro.Client) -> None:
    async with client.stream("numbers", "Numbers.Count", Num(5), Num) as s:
        got = [n.value async for n in s]
        assert s.trailers["grpc-status"] == "0"
        assert s.headers["content-type"] == "application/grpc+json"
    assert got == [0, 1, 2, 3, 4]


async def test_empty_server_stream(numbers: Numbers, client: micro.Client) -> None:
    async with client.stream("numbers", "Numbers.Count", Num(0), Num) as s:
        assert [n async for n in s] == []


async def test_client_stream(numbers: Numbers, client: micro.Client) -> None:
    async with client.stream("numbers", "Numbers.Total", response_type=Num) as s:
        for i in range(10):
            await s.send(Num(i))
        await s.close_send()
        assert await s.receive() == Num(45)
        with pytest.raises(anyio.EndOfStream):
            await s.receive()


async def test_bidi_stream_interleaves(numbers: Numbers, client: micro.Client) -> None:
    async with client.stream("numbers", "Numbers.Double", response_type=Num) as s:
        for i in range(20):
            await s.send(Num(i))
            assert await s.receive() == Num(2 * i)
        await s.close_send()
        assert [n async for n in s] == []


async def test_explicit_stream_object(numbers: Numbers, client: micro.Client) -> None:
    async with client.stream(
        "numbers", "Numbers.Explicit", response_type=Num, content_type="application/grpc+msgpack"
    ) as s:
        assert await s.receive() == Num(-1)
        await s.send(Num(10))
        assert [await s.receive(), await s.receive()] == [Num(11), Num(12)]
        await s.close_send()
        assert [n async for n in s] == []


async def test_error_ends_stream_with_its_status(numbers: Numbers, client: micro.Client) -> None:
    got: list[int] = []
    with pytest.raises(micro.NotFound) as info:
        async with client.stream("numbers", "Numbers.FailMidway", Num(0), Num) as s:
            async for n in s:
                got.append(n.value)
    assert got == [1, 2]
    assert info.value.detail == "ran out of numbers"
    assert info.value.grpc_status == 5
    assert info.value.id == "numbers"


async def test_crash_is_internal_error_with_safe_message(
    numbers: Numbers, client: micro.Client
) -> None:
    with pytest.raises(micro.InternalServerError) as info:
        async with client.stream("numbers", "Numbers.CrashMidway", Num(0), Num) as s:
            assert await s.receive() == Num(1)
            await s.receive()
    assert "secret" not in info.value.detail
    # The connection and other calls are unaffected.
    assert await client.call("numbers", "Greeter.Hello", Req("x"), Resp) == Resp("Hello x")


async def test_leaving_early_cancels_the_server_handler(
    numbers: Numbers, client: micro.Client
) -> None:
    async with client.stream("numbers", "Numbers.Forever", Blob(b"x"), Blob) as s:
        assert await s.receive() == Blob(b"x")
    with anyio.fail_after(10):
        while numbers.outcomes != ["cancelled"]:
            await anyio.sleep(0.01)
    assert await client.call("numbers", "Greeter.Hello", Req("y"), Resp) == Resp("Hello y")


async def test_stream_deadline_resets_and_cancels(numbers: Numbers, client: micro.Client) -> None:
    with pytest.raises(micro.Timeout):
        async with client.stream("numbers", "Numbers.Sink", response_type=Num, timeout=0.3) as s:
            await s.send(Blob(b"a"))
            await s.receive()
    with anyio.fail_after(10):
        while numbers.outcomes != ["cancelled"]:
            await anyio.sleep(0.01)


async def _until_stable(read: object, attr: str) -> int:
    """Wait (bounded) until a counter stops moving; return its value."""
    last = -1
    with anyio.fail_after(20):
        while True:
            now = getattr(read, attr)
            if now == last:
                return int(now)
            last = now
            await anyio.sleep(0.2)


async def test_slow_consumer_makes_producer_wait(numbers: Numbers, client: micro.Client) -> None:
    blob = Blob(b"z" * 10_000)  # ~13 KB of JSON per message
    async with client.stream("numbers", "Numbers.Forever", blob, Blob) as slow:
        await slow.receive()
        stalled_at = await _until_stable(numbers, "produced")
        # Bounded by flow-control windows (1 MiB per stream), not by memory.
        assert 20 < stalled_at < 300, stalled_at
        # Meanwhile the same connection serves others at once.
        assert await client.call("numbers", "Greeter.Hello", Req("z"), Resp) == Resp("Hello z")
        async with client.stream("numbers", "Numbers.Count", Num(3), Num) as other:
            assert [n.value async for n in other] == [0, 1, 2]
        # Reading on lets the producer go on.
        for _ in range(stalled_at + 50):
            await slow.receive()
        assert numbers.produced > stalled_at


async def test_slow_handler_makes_caller_wait(numbers: Numbers, client: micro.Client) -> None:
    blob = Blob(b"q" * 10_000)
    sent = 0

    async def send_forever(s: micro.ClientStream[Num]) -> None:
        nonlocal sent
        while True:
            await s.send(blob)
            sent += 1

    class Counter:
        @property
        def value(self) -> int:
            return sent

    async with (
        client.stream("numbers", "Numbers.Sink", response_type=Num) as s,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(send_forever, s)
        stalled_at = await _until_stable(Counter(), "value")
        assert 20 < stalled_at < 300, stalled_at
        assert await client.call("numbers", "Greeter.Hello", Req("w"), Resp) == Resp("Hello w")
        tg.cancel_scope.cancel()


async def test_hundreds_of_concurrent_streams_on_one_connection(
    numbers: Numbers, client: micro.Client
) -> None:
    results: dict[int, list[int]] = {}

    async def one(i: int) -> None:
        async with client.stream("numbers", "Numbers.Double", response_type=Num) as s:
            values = []
            for j in range(3):
                await s.send(Num(i + j))
                values.append((await s.receive()).value)
            await s.close_send()
            results[i] = values

    async with anyio.create_task_group() as tg:
        for i in range(300):
            tg.start_soon(one, i)
    assert results == {i: [2 * i, 2 * i + 2, 2 * i + 4] for i in range(300)}
    assert client._pool is not None and len(client._pool._connections) == 1


async def test_large_messages_both_ways(numbers: Numbers, client: micro.Client) -> None:
    big = Blob(bytes(range(256)) * 8192)  # 2 MiB, ~2.7 MiB as JSON
    async with client.stream(
        "numbers", "Numbers.EchoBlobs", response_type=Blob, content_type="application/grpc+msgpack"
    ) as s:
        for _ in range(3):
            await s.send(big)
            assert await s.receive() == big
        await s.close_send()


async def test_streaming_requests_over_plain_http_is_415(registry: MemoryRegistry) -> None:
    # Server streams are served as JSON lines (test_plain_streams.py); request streams need gRPC.
    service = micro.Service("plain", address="127.0.0.1:0", registry=registry)
    service.handle(Numbers())
    async with service.running(), httpx.AsyncClient(http2=True, http1=False) as http:
        r = await http.post(f"http://{service.address}/Numbers/Double", json={"value": 1})
    assert r.status_code == 415
    assert "gRPC" in r.json()["detail"]


async def test_a_long_stream_outlives_many_windows_and_idle_gaps(
    numbers: Numbers, client: micro.Client
) -> None:
    """40 MiB each way on one stream, sent ahead of the replies: many times the stream
    (1 MiB) and connection (16 MiB) windows, so any leak in flow-control accounting would
    stall it; with idle gaps, since nothing in micro times a quiet stream out."""
    chunk = Blob(bytes(range(256)) * 256)  # 64 KiB
    received = 0
    async with client.stream(
        "numbers", "Numbers.EchoBlobs", response_type=Blob, content_type="application/grpc+msgpack"
    ) as s:

        async def send_all() -> None:
            for i in range(640):
                await s.send(chunk)
                if i in (200, 400):
                    await anyio.sleep(1)
            await s.close_send()

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_all)
            async for blob in s:
                assert blob == chunk
                received += len(blob.data)
    assert received == 40 * 1024 * 1024


SOAK_SECONDS = float(os.environ.get("MICRO_SOAK_SECONDS", "60"))


async def _soak(seconds: float) -> tuple[int, int]:
    """One bidirectional stream kept open for ``seconds``: a message every 20 ms, with
    quiet spells of 20 s, and unary calls on the same connection meanwhile. Returns
    (messages answered, unary calls answered)."""
    registry = MemoryRegistry()
    service = micro.Service("soak", address="127.0.0.1:0", registry=registry)
    service.handle(Numbers())
    service.handle(Greeter())
    sent = answered = calls = 0
    client = micro.Client(registry=registry)
    async with (
        service.running(),
        client,
        client.stream("soak", "Numbers.Double", response_type=Num) as s,
    ):

        async def send_all() -> None:
            nonlocal sent
            start = anyio.current_time()
            quiet_at = {start + seconds / 3, start + 2 * seconds / 3}
            while anyio.current_time() - start < seconds:
                now = anyio.current_time()
                for at in sorted(quiet_at):
                    if now >= at:
                        quiet_at.discard(at)
                        await anyio.sleep(min(20.0, seconds / 6))
                await s.send(Num(sent))
                sent += 1
                await anyio.sleep(0.02)
            await s.close_send()

        async def unary_meanwhile() -> None:
            nonlocal calls
            while True:
                await anyio.sleep(1)
                reply = await client.call("soak", "Greeter.Hello", Req("soak"), Resp)
                assert reply == Resp("Hello soak")
                calls += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_all)
            tg.start_soon(unary_meanwhile)
            async for reply in s:
                assert reply == Num(answered * 2)  # in order, none lost
                answered += 1
            tg.cancel_scope.cancel()
    assert answered == sent
    return answered, calls


@pytest.mark.anyio(False)
def test_a_stream_lives_through_quiet_spells_on_both_backends() -> None:
    """Both backends at once, each on its own thread, so the suite waits the time once."""
    results: dict[str, tuple[int, int] | BaseException] = {}

    def run(backend: str) -> None:
        try:
            results[backend] = anyio.run(_soak, SOAK_SECONDS, backend=backend)
        except BaseException as exc:
            results[backend] = exc

    threads = [threading.Thread(target=run, args=(b,)) for b in ("asyncio", "trio")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SOAK_SECONDS + 120)
    for backend in ("asyncio", "trio"):
        outcome = results.get(backend)
        if isinstance(outcome, BaseException):
            raise outcome
        assert outcome is not None, f"{backend} soak did not finish"
        answered, calls = outcome
        assert answered > 0 and calls > 0  # every message answered, in order (checked above)
