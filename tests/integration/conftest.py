"""Services on real sockets on 127.0.0.1, one fresh memory registry per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import pytest

import micro
from micro.registry import MemoryRegistry


@dataclass
class Req:
    name: str


@dataclass
class Resp:
    message: str


@dataclass
class Sleep:
    seconds: float


class Greeter:
    """The handler most integration tests call."""

    def __init__(self) -> None:
        self.started = 0
        self.finished_slow: list[str] = []  # "done" or "cancelled", per slow call

    async def hello(self, req: Req) -> Resp:
        return Resp(message=f"Hello {req.name}")

    async def fail(self, req: Req) -> Resp:
        raise RuntimeError("secret internals")

    async def missing(self, req: Req) -> Resp:
        raise micro.NotFound(f"no user {req.name}")

    async def slow(self, req: Sleep) -> Resp:
        self.started += 1
        try:
            await anyio.sleep(req.seconds)
        except BaseException:
            self.finished_slow.append("cancelled")
            raise
        self.finished_slow.append("done")
        return Resp(message="slept")

    async def meta(self, req: dict[str, str]) -> dict[str, object]:
        return {"metadata": dict(micro.context.metadata()), "remaining": micro.context.remaining()}

    async def echo_bytes(self, req: bytes) -> bytes:
        return req


@pytest.fixture
def registry() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
async def greeter_service(registry: MemoryRegistry) -> AsyncIterator[tuple[micro.Service, Greeter]]:
    service = micro.Service("greeter", address="127.0.0.1:0", registry=registry, grace_period=5)
    greeter = Greeter()
    service.handle(greeter)
    async with service.running():
        yield service, greeter


@pytest.fixture
async def client(registry: MemoryRegistry) -> AsyncIterator[micro.Client]:
    async with micro.Client(registry=registry) as c:
        yield c
