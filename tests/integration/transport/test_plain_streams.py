"""Server streams over plain HTTP on the service's own port: NDJSON or SSE, HTTP/1.1 and h2c.

The same endpoints are served over gRPC to micro and grpcio clients
(test_streaming.py); here they are called as curl and browsers call them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest

import micro
from micro.registry import MemoryRegistry

from ...servers import require_binary

pytestmark = pytest.mark.anyio


@dataclass
class Num:
    value: int


class Numbers:
    def __init__(self) -> None:
        self.ended = anyio.Event()
        self.slow_ended = anyio.Event()

    async def count(self, req: Num) -> AsyncIterator[Num]:
        for i in range(req.value):
            yield Num(i)

    async def fail_midway(self, req: Num) -> AsyncIterator[Num]:
        yield Num(1)
        raise micro.NotFound("ran out of numbers")

    async def crash_midway(self, req: Num) -> AsyncIterator[Num]:
        yield Num(1)
        raise RuntimeError("secret internals")

    async def slow(self, req: Num) -> AsyncIterator[Num]:
        try:
            yield Num(0)
            await anyio.sleep(3600)
            yield Num(1)
        finally:
            self.slow_ended.set()

    async def forever(self, req: Num) -> AsyncIterator[Num]:
        try:
            i = 0
            while True:
                yield Num(i)
                i += 1
                await anyio.sleep(0.005)
        finally:
            self.ended.set()

    async def total(self, reqs: AsyncIterator[Num]) -> Num:
        return Num(sum([r.value async for r in reqs]))

    async def explicit(self, stream: micro.Stream[Num, Num]) -> None:
        await stream.send(Num(0))


@pytest.fixture
async def numbers() -> AsyncIterator[tuple[micro.Service, Numbers]]:
    handler = Numbers()
    service = micro.Service("numbers", address="127.0.0.1:0", registry=MemoryRegistry())
    service.handle(handler)
    async with service.running():
        yield service, handler


@pytest.fixture(params=["http1", "h2c"])
async def http(
    request: pytest.FixtureRequest, numbers: tuple[micro.Service, Numbers]
) -> AsyncIterator[httpx.AsyncClient]:
    h2 = request.param == "h2c"
    base = f"http://{numbers[0].address}"
    async with httpx.AsyncClient(base_url=base, http1=not h2, http2=h2, timeout=10) as client:
        yield client


def lines(response: httpx.Response) -> list[object]:
    return [json.loads(line) for line in response.text.splitlines()]


async def test_messages_come_as_ndjson_lines(
    http: httpx.AsyncClient, request: pytest.FixtureRequest
) -> None:
    r = await http.post("/Numbers/Count", json={"value": 3})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-ndjson"
    assert lines(r) == [{"value": 0}, {"value": 1}, {"value": 2}]
    h2 = request.node.callspec.params["http"] == "h2c"
    assert r.http_version == ("HTTP/2" if h2 else "HTTP/1.1")


async def test_or_as_server_sent_events(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/Numbers/Count", json={"value": 2}, headers={"Accept": "text/event-stream"}
    )
    assert r.headers["content-type"] == "text/event-stream"
    assert r.text == 'data: {"value":0}\n\ndata: {"value":1}\n\n'


async def test_an_empty_stream_is_an_empty_answer(http: httpx.AsyncClient) -> None:
    r = await http.post("/Numbers/Count", json={"value": 0})
    assert (r.status_code, r.text) == (200, "")


async def test_an_error_after_the_first_message_is_the_last_line(http: httpx.AsyncClient) -> None:
    r = await http.post("/Numbers/FailMidway", json={"value": 0})
    first, last = lines(r)
    assert first == {"value": 1}
    assert last == {
        "error": {
            "id": "numbers",
            "code": 404,
            "detail": "ran out of numbers",
            "status": "Not Found",
        }
    }
    crashed = await http.post(
        "/Numbers/CrashMidway", json={"value": 0}, headers={"Accept": "text/event-stream"}
    )
    assert crashed.text.startswith('data: {"value":1}\n\nevent: error\ndata: ')
    assert '"code": 500' in crashed.text and "secret" not in crashed.text


async def test_an_error_before_it_is_the_http_status(http: httpx.AsyncClient) -> None:
    bad = await http.post("/Numbers/Count", content=b"{nope")
    assert bad.status_code == 400 and bad.json()["code"] == 400
    packed = await http.post(
        "/Numbers/Count",
        content=b"\x81\xa5value\x01",
        headers={"content-type": "application/msgpack"},
    )
    assert packed.status_code == 415
    assert "JSON" in packed.json()["detail"]
    for endpoint in ("Total", "Explicit"):
        r = await http.post(f"/Numbers/{endpoint}", json={"value": 1})
        assert r.status_code == 415
        assert r.json()["detail"].startswith(f"Numbers.{endpoint} streams requests")


async def test_a_deadline_ends_the_stream(http: httpx.AsyncClient) -> None:
    r = await http.post("/Numbers/Slow", json={"value": 0}, headers={"grpc-timeout": "200m"})
    first, last = lines(r)
    assert first == {"value": 0}
    assert last["error"]["code"] == 408  # type: ignore[index]


async def test_a_caller_that_leaves_cancels_the_handler(
    http: httpx.AsyncClient, numbers: tuple[micro.Service, Numbers]
) -> None:
    service, handler = numbers
    async with http.stream("POST", "/Numbers/Forever", json={"value": 0}) as r:
        seen = []
        async for line in r.aiter_lines():
            seen.append(json.loads(line)["value"])
            if len(seen) == 3:
                break
    await http.aclose()
    assert seen == [0, 1, 2]
    with anyio.fail_after(10):
        await handler.ended.wait()
    # The service goes on serving.
    async with httpx.AsyncClient(base_url=f"http://{service.address}") as again:
        assert lines(await again.post("/Numbers/Count", json={"value": 1})) == [{"value": 0}]


async def test_a_caller_that_leaves_a_quiet_stream_cancels_the_handler(
    http: httpx.AsyncClient, numbers: tuple[micro.Service, Numbers]
) -> None:
    _, handler = numbers
    async with http.stream("POST", "/Numbers/Slow", json={"value": 0}) as r:
        async for line in r.aiter_lines():
            assert json.loads(line) == {"value": 0}
            break
    await http.aclose()  # nothing more will be written: the server must notice by itself
    with anyio.fail_after(10):
        await handler.slow_ended.wait()


async def test_curl_reads_the_lines_as_they_come(numbers: tuple[micro.Service, Numbers]) -> None:
    curl = require_binary("curl", "curl")
    service, _ = numbers
    for extra in ([], ["--http2-prior-knowledge"]):
        out = await anyio.run_process(
            [
                curl,
                "-sSN",
                *extra,
                "-H",
                "content-type: application/json",
                "-d",
                '{"value": 3}',
                f"http://{service.address}/Numbers/Count",
            ]
        )
        assert out.stdout == b'{"value":0}\n{"value":1}\n{"value":2}\n'


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_streaming_example_serves_and_calls(backend: str, free_tcp_port: int) -> None:
    root = Path(__file__).resolve().parents[3]
    example = str(root / "examples" / "streaming" / "main.py")
    address = f"127.0.0.1:{free_tcp_port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, example, "serve", "--backend", backend, "--address", address],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=root,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # ready once the port answers a plain call to the server stream
            try:
                r = httpx.post(f"http://{address}/Numbers/Count", json={"value": 2}, timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        assert r.text == '{"value":0}\n{"value":1}\n'
        out = subprocess.run(
            [sys.executable, example, "call", "--backend", backend, "--address", address],
            capture_output=True,
            text=True,
            cwd=root,
            env=env,
            timeout=60,
            check=True,
        ).stdout
        assert out.splitlines() == [
            "count: [0, 1, 2]",
            "total: 10",
            "double: [2, 4, 6]",
            "chat: [-1, 11, 12]",
        ]
        server.send_signal(signal.SIGTERM)
        logs, _ = server.communicate(timeout=20)
        assert server.returncode == 0 and b"Traceback" not in logs
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
