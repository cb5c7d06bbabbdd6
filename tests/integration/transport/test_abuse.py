"""Limits against abusive peers: each shows a well-behaved client is served meanwhile."""

from __future__ import annotations

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes

import micro
from micro.registry import MemoryRegistry

from ..conftest import Greeter, Req, Resp, Sleep
from ..rawh2 import RawH2

pytestmark = pytest.mark.anyio


async def _goaway(raw: RawH2) -> h2.events.ConnectionTerminated | None:
    """Read until the server says GOAWAY (returned) or closes the connection (None)."""
    with anyio.fail_after(20):
        while True:
            try:
                data = await raw.net.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
            for event in raw.conn.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    return event
            await raw.flush()


async def _good_calls(client: micro.Client, service: str, n: int = 20) -> None:
    for i in range(n):
        assert await client.call(service, "Greeter.Hello", Req(str(i)), Resp) == Resp(f"Hello {i}")


@pytest.fixture
async def guarded(registry: MemoryRegistry) -> micro.Service:
    service = micro.Service(
        "guarded", address="127.0.0.1:0", registry=registry, max_concurrent_streams=10
    )
    service.handle(Greeter())
    async with service.running():
        yield service  # type: ignore[misc]


async def test_rapid_reset_flood_is_cut_off(guarded: micro.Service, client: micro.Client) -> None:
    raw = await RawH2.connect(guarded.address)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_good_calls, client, "guarded", 50)
        terminated = None
        for _batch in range(20):
            for _ in range(500):
                sid = raw.start("/Greeter/Hello", "application/json", end_stream=True)
                raw.conn.reset_stream(sid, ErrorCodes.CANCEL)
            try:
                await raw.flush()
            except (anyio.BrokenResourceError, anyio.EndOfStream, OSError):
                break
        terminated = await _goaway(raw)
    await raw.aclose()
    assert terminated is not None
    assert terminated.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    with anyio.fail_after(10):
        while guarded.server.inflight:
            await anyio.sleep(0.01)
    await _good_calls(client, "guarded")


async def test_a_client_exceeding_max_concurrent_streams_is_refused(
    guarded: micro.Service, client: micro.Client
) -> None:
    raw = await RawH2.connect(guarded.address)
    # Open more streams than the server allows, before reading its SETTINGS.
    for _ in range(11):
        sid = raw.start("/Greeter/Slow", "application/json", [("grpc-timeout", "30S")])
        raw.conn.send_data(sid, b'{"seconds": 30}')
    await raw.flush()
    terminated = await _goaway(raw)
    await raw.aclose()
    assert terminated is None or terminated.error_code == ErrorCodes.PROTOCOL_ERROR
    await _good_calls(client, "guarded")


async def test_micro_client_waits_for_a_free_stream(
    guarded: micro.Service, client: micro.Client
) -> None:
    results: list[Resp] = []

    async def slow() -> None:
        results.append(await client.call("guarded", "Greeter.Slow", Sleep(0.05), Resp))

    async with anyio.create_task_group() as tg:
        for _ in range(40):  # four times the server's limit, on one connection
            tg.start_soon(slow)
    assert results == [Resp("slept")] * 40


async def test_oversized_header_list_closes_that_connection_only(
    guarded: micro.Service, client: micro.Client
) -> None:
    raw = await RawH2.connect(guarded.address)
    raw.start("/Greeter/Hello", "application/json", [("x-huge", "v" * 200_000)], end_stream=True)
    await raw.flush()
    terminated = await _goaway(raw)
    await raw.aclose()
    assert terminated is None or terminated.error_code != ErrorCodes.NO_ERROR
    await _good_calls(client, "guarded")
