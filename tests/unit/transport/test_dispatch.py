"""The drivers serve any dispatcher: the transport layer without the server.

A dispatcher here is a small class of this file, not micro's Server, served
by micro's listener on 127.0.0.1 and called over HTTP/1.1 and HTTP/2 (h2c).
"""

from __future__ import annotations

import ast
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import pytest

import micro.transport
from micro.errors import BadRequest, MicroError, NotFound, Timeout
from micro.transport.calls import RequestHead
from micro.transport.dispatch import (
    Dispatcher,
    Kind,
    MessageIO,
    RouteGuard,
    WebResponse,
    WebRoute,
    deadline_exceeded,
    within_deadline,
)
from micro.transport.listener import Listener

pytestmark = pytest.mark.anyio


def test_no_transport_module_imports_the_server() -> None:
    root = Path(micro.transport.__file__).parent
    offenders = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if (module == "server" and node.level == 2) or module.startswith("server."):
                    offenders.append(f"{path.name}: from {'.' * node.level}{module}")
                if node.level == 0 and module.startswith("micro.server"):
                    offenders.append(f"{path.name}: from {module}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{path.name}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("micro.server")
                ]
    assert offenders == []


async def _answer(value: str, delay: float = 0.0) -> str:
    await anyio.sleep(delay)
    return value


async def _refuse() -> str:
    await anyio.lowlevel.checkpoint()
    raise BadRequest("no")


async def test_within_deadline_returns_the_result_or_the_error() -> None:
    assert await within_deadline(_answer("a"), None, "svc") == ("a", None)
    assert await within_deadline(_answer("b"), 10.0, "svc") == ("b", None)
    result, error = await within_deadline(_refuse(), 10.0, "svc")
    assert result is None and isinstance(error, BadRequest)


async def test_a_deadline_that_passes_is_timeout_deadline_exceeded() -> None:
    result, error = await within_deadline(_answer("late", delay=10.0), 0.01, "svc")
    assert result is None
    assert isinstance(error, Timeout)
    assert (error.id, error.grpc_status, error.code) == ("svc", 4, 408)
    assert (
        deadline_exceeded("x").to_dict()
        == Timeout("deadline exceeded", id="x", grpc_status=4).to_dict()
    )


async def test_a_scope_given_is_the_one_cancelled_and_the_call_stops() -> None:
    scope = anyio.CancelScope()
    scope.cancel()
    result, error = await within_deadline(_answer("never", delay=10.0), None, "svc", scope)
    assert result is None and error is not None
    assert scope.cancelled_caught


@dataclass(frozen=True)
class _Target:
    name: str
    kind: Kind = Kind.UNARY


@dataclass(frozen=True)
class _Limits:
    max_message_size: int = 1024
    max_concurrent_streams: int = 100
    max_header_list_size: int = 16 * 1024


@dataclass
class Upper:
    """Upper-cases plain JSON strings; ``Upper.Slow`` takes 10 s."""

    name: str = "upper"
    options: _Limits = field(default_factory=_Limits)
    routes: dict[str, WebRoute] = field(default_factory=dict)
    route_guard: RouteGuard | None = None
    started: int = 0
    finished: int = 0

    def lookup(self, name: str, metadata: Mapping[str, str] | None = None) -> _Target:
        if name not in ("Upper.Call", "Upper.Slow"):
            raise NotFound(f"unknown endpoint {name}", id=self.name, grpc_status=12)
        return _Target(name)

    def streams_as_lines(self, head: RequestHead, ep: _Target) -> bool:
        return False

    async def call_unary(self, head: RequestHead, ep: _Target, body: bytes | memoryview) -> bytes:
        if ep.name == "Upper.Slow":
            await anyio.sleep(10)
        return json.dumps(json.loads(bytes(body)).upper()).encode()

    async def call_stream(self, head: RequestHead, ep: _Target, io: MessageIO) -> None:
        raise BadRequest("no streams here")

    def call_started(self) -> None:
        self.started += 1

    def call_finished(self) -> None:
        self.finished += 1

    def internal_error(self, endpoint: str, exc: BaseException) -> MicroError:
        return MicroError(f"internal error in {endpoint}", code=500, id=self.name)


async def _health() -> WebResponse:
    return WebResponse(200, "text/plain", b"ok")


@pytest.fixture
async def upper() -> AsyncIterator[tuple[Upper, str]]:
    dispatcher = Upper()
    dispatcher.routes["/health"] = _health
    served: Dispatcher[_Target] = dispatcher
    listener = Listener(served, "127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        address = await tg.start(listener.serve)
        yield dispatcher, address
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_the_drivers_serve_a_dispatcher_that_is_not_the_server(
    upper: tuple[Upper, str], http2: bool
) -> None:
    dispatcher, address = upper
    async with httpx.AsyncClient(
        base_url=f"http://{address}", http1=not http2, http2=http2, trust_env=False
    ) as http:
        ok = await http.post(
            "/Upper/Call", content=b'"abc"', headers={"content-type": "application/json"}
        )
        assert ok.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert (ok.status_code, ok.json()) == (200, "ABC")
        missing = await http.post("/Upper/Other", content=b"1")
        assert missing.status_code == 404
        assert missing.json()["detail"] == "unknown endpoint Upper.Other"
        late = await http.post("/Upper/Slow", content=b'"x"', headers={"grpc-timeout": "20m"})
        assert late.status_code == 408
        assert late.json()["id"] == "upper"
        assert late.json()["detail"] == "deadline exceeded"
        health = await http.get("/health")
        assert (health.status_code, health.text) == (200, "ok")
    with anyio.fail_after(5):
        while dispatcher.finished != dispatcher.started:
            await anyio.sleep(0.01)
    assert dispatcher.started == 2
