"""The micro command, run as a subprocess against services on real sockets.

Services run in the test's event loop (asyncio and Trio) and register in a real
etcd, which the command finds through ``MICRO_REGISTRY``. Subprocess runs are
slow, so each test checks several things per service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import anyio
import anyio.abc
import httpx
import pytest

import micro
from micro.registry.etcd import EtcdRegistry

from ...servers import ServerProcess, free_port, require_binary
from ..conftest import Greeter

pytestmark = pytest.mark.anyio

MICRO = [sys.executable, "-m", "micro.cli"]

#: seconds one command may take (a busy CI box starts Python slowly)
COMMAND_TIMEOUT = 60


@dataclass
class Num:
    value: int


class Numbers:
    async def count(self, req: Num) -> AsyncIterator[Num]:
        for i in range(req.value):
            yield Num(i)

    async def double(self, reqs: AsyncIterator[Num]) -> AsyncIterator[Num]:
        async for r in reqs:
            yield Num(r.value * 2)


@dataclass
class Running:
    name: str
    env: dict[str, str]


def _env(etcd: ServerProcess, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "MICRO_REGISTRY": "etcd://" + etcd.url.removeprefix("http://"),
        "MICRO_ADDRESS": "127.0.0.1:0",
        **extra,
    }


async def micro_cmd(
    *args: str, env: Mapping[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(COMMAND_TIMEOUT):
        return await anyio.run_process([*MICRO, *args], input=stdin, env=env, check=False)


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    """The command's stderr, which must be one line starting with ``error:``."""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr.decode()
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
async def running(etcd_server: ServerProcess) -> AsyncIterator[Running]:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    registry = EtcdRegistry(etcd_server.url)
    service = micro.Service(name, address="127.0.0.1:0", registry=registry, grace_period=1)
    service.handle(Greeter())
    service.handle(Numbers())
    async with service.running():
        yield Running(name, _env(etcd_server))


async def test_services_describe_and_health(running: Running) -> None:
    listed = await micro_cmd("services", env=running.env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.decode().splitlines() if running.name in line)
    assert row.split() == [running.name, "latest", "1"]

    described = await micro_cmd("describe", running.name, env=running.env)
    assert described.returncode == 0, described.stderr
    text = described.stdout.decode()
    assert "Greeter.Hello (unary)" in text
    assert "Numbers.Count (server_stream)" in text
    assert (
        '  request:  {"title": "Req", "type": "object", "properties": {"name": {"type": "string"}}'
        in text
    )

    as_json = await micro_cmd("describe", running.name, "--json", env=running.env)
    [record] = json.loads(as_json.stdout)
    hello = next(e for e in record["endpoints"] if e["name"] == "Greeter.Hello")
    assert hello["response"]["$defs"]["Resp"]["required"] == ["message"]

    health = await micro_cmd("health", running.name, env=running.env)
    assert health.returncode == 0, health.stderr
    header, row = health.stdout.decode().splitlines()[:2]
    assert header.split()[:4] == ["NODE", "ADDRESS", "VERSION", "STATUS"]
    assert "REQUESTS" in header and "MEMORY" in header
    assert row.split()[3] == "SERVING"
    # The node's debug stats come along: uptime, calls, memory, tasks.
    health_json = await micro_cmd("health", running.name, "--json", env=running.env)
    [node] = json.loads(health_json.stdout)
    assert node["status"] == "SERVING"
    assert node["stats"]["service"] == running.name
    assert node["stats"]["memory_rss_bytes"] > 0
    assert node["stats"]["requests"] >= 1  # the health check before it


async def test_call(running: Running) -> None:
    hello = await micro_cmd(
        "call", running.name, "Greeter.Hello", "-", env=running.env, stdin=b'{"name": "alice"}'
    )
    assert hello.returncode == 0, hello.stderr
    assert json.loads(hello.stdout) == {"message": "Hello alice"}
    # The command itself runs on Trio as well.
    meta = await micro_cmd(
        "--backend",
        "trio",
        "call",
        running.name,
        "Greeter.Meta",
        "{}",
        "-H",
        "x-tenant=acme",
        "-H",
        "Authorization=Bearer t",
        "--timeout",
        "5",
        env=running.env,
    )
    assert meta.returncode == 0, meta.stderr
    answer = json.loads(meta.stdout)
    assert answer["metadata"]["x-tenant"] == "acme"
    assert answer["metadata"]["authorization"] == "Bearer t"
    assert 0 < answer["remaining"] <= 5
    # ... and on uvloop's event loop (the uvloop extra).
    uv = await micro_cmd(
        "--backend",
        "uvloop",
        "call",
        running.name,
        "Greeter.Hello",
        '{"name": "uv"}',
        env=running.env,
    )
    assert uv.returncode == 0, uv.stderr
    assert json.loads(uv.stdout) == {"message": "Hello uv"}


async def test_bad_input_is_one_line_and_an_exit_code(running: Running) -> None:
    name = running.name
    cases = [
        (("call", "nobody-here", "Greeter.Hello", "{}"), 1, "404 Not Found: service nobody-here"),
        ((("call", name, "Greeter.Nope", "{}")), 1, "404 Not Found: unknown endpoint Greeter.Nope"),
        (("call", name, "Greeter.Hello", "{bad"), 2, "the request is not valid JSON"),
        (("call", name, "Greeter.Hello", '{"name": 1}'), 1, "400 Bad Request"),
        (("call", name, "Greeter.Slow", '{"seconds": 30}', "--timeout", "0.3"), 1, "408"),
        (("call", name, "Greeter.Hello", "{}", "-H", "novalue"), 2, "-H takes key=value"),
        (("describe", "nobody-here"), 1, "404 Not Found"),
    ]
    for args, code, message in cases:
        result = await micro_cmd(*args, env=running.env)
        assert result.returncode == code, (args, result.stderr)
        assert message in one_line_error(result), args
    bad_registry = await micro_cmd("services", env={**running.env, "MICRO_REGISTRY": "nope://x"})
    assert bad_registry.returncode == 2
    assert "unknown registry 'nope://x'" in one_line_error(bad_registry)


async def test_stream(running: Running) -> None:
    doubled = await micro_cmd(
        "stream",
        running.name,
        "Numbers.Double",
        env=running.env,
        stdin=b'{"value": 1}\n\n{"value": 21}\n',
    )
    assert doubled.returncode == 0, doubled.stderr
    assert [json.loads(line) for line in doubled.stdout.splitlines()] == [
        {"value": 2},
        {"value": 42},
    ]
    counted = await micro_cmd(
        "stream", running.name, "Numbers.Count", env=running.env, stdin=b'{"value": 3}'
    )
    assert counted.stdout.decode().splitlines() == ['{"value": 0}', '{"value": 1}', '{"value": 2}']
    bad = await micro_cmd(
        "stream", running.name, "Numbers.Double", env=running.env, stdin=b'{"value": 1}\nnope\n'
    )
    assert bad.returncode == 2
    assert "line 2 of stdin is not valid JSON" in one_line_error(bad)


async def _line(stream: anyio.abc.ByteReceiveStream, buffer: bytearray) -> str:
    while b"\n" not in buffer:
        buffer.extend(await stream.receive())
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_publish_and_subscribe(etcd_server: ServerProcess) -> None:
    env = _env(etcd_server)
    topic = f"cli.{uuid.uuid4().hex[:8]}"
    process = await anyio.open_process([*MICRO, "subscribe", topic], env=env)
    try:
        assert process.stdout is not None and process.stderr is not None
        with anyio.fail_after(COMMAND_TIMEOUT):
            assert await _line(process.stderr, bytearray()) == f"subscribed to {topic}"
        published = await micro_cmd("publish", topic, '{"order": 7}', env=env)
        assert published.returncode == 0, published.stderr
        with anyio.fail_after(COMMAND_TIMEOUT):
            assert json.loads(await _line(process.stdout, bytearray())) == {"order": 7}
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(COMMAND_TIMEOUT):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


BODY = '{"name": "gw"}'


async def test_gateway_command(running: Running) -> None:
    curl = require_binary("curl", "curl")
    port = free_port()
    process = await anyio.open_process(
        [*MICRO, "gateway", "--address", f"127.0.0.1:{port}", "--cors", "http://app.example"],
        env=running.env,
    )
    try:
        assert process.stderr is not None
        with anyio.fail_after(COMMAND_TIMEOUT):
            line = await _line(process.stderr, bytearray())
        assert line == f"gateway serving on http://127.0.0.1:{port}"
        url = f"http://127.0.0.1:{port}/{running.name}/Greeter.Hello"
        called = await anyio.run_process(
            [curl, "-sS", "-XPOST", "-H", "Content-Type: application/json", "-d", BODY, url]
        )
        assert json.loads(called.stdout) == {"message": "Hello gw"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            resp = await http.get("/api/services", headers={"Origin": "http://app.example"})
            assert resp.headers["access-control-allow-origin"] == "http://app.example"
            assert running.name in [s["name"] for s in resp.json()]
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(COMMAND_TIMEOUT):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
