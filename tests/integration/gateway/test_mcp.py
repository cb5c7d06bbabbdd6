"""Services as MCP tools, driven by the MCP SDK's own client.

Over stdio, ``micro mcp`` runs as a subprocess, as an agent host starts it,
and finds the services through a real etcd. Over HTTP, the client speaks
Streamable HTTP to the gateway's ``/mcp`` in the test's process. Each runs on
asyncio and Trio, with the client on the current protocol (2026-07-28, where
changes arrive on a ``subscriptions/listen`` stream) and on the handshake-era
one most agent hosts speak today (changes as ``notifications/tools/list_changed``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
import sniffio

import micro
from micro.auth import Account, Auth, KeySet, Resource, Rule
from micro.auth.tokens import issue
from micro.registry import MemoryRegistry
from micro.registry.base import Registry
from micro.registry.etcd import EtcdRegistry

from ...servers import ServerProcess, free_port
from ..conftest import Greeter
from .mcp_requests import ACCEPT, INITIALIZE

try:
    import mcp  # noqa: F401
except ImportError:
    if os.environ.get("MICRO_REQUIRE_BACKENDS") == "1":
        raise
    pytest.skip("the MCP SDK: pip install 'micro-runtime[mcp]'", allow_module_level=True)

import httpx2
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from micro.gateway import McpOptions
from micro.gateway.server import open_gateway

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]

#: seconds for a change in the registry to reach a client (a busy CI box is slow)
CHANGE_TIMEOUT = 30
#: seconds for one MCP request, including a subprocess's start
REQUEST_TIMEOUT = 60

KEYS = KeySet.generate()
ALICE = Account("alice", scopes=("todo",))
EVE = Account("eve", scopes=("other",))


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mcp_example", ROOT / "examples/mcp/main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


example = _example()


def token(account: Account) -> str:
    return issue(KEYS, account, issuer="micro", ttl=600)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def todo_service(
    registry: Registry, name: str, *, auth: bool = False
) -> AsyncIterator[micro.Service]:
    service = micro.Service(
        name,
        address="127.0.0.1:0",
        registry=registry,
        grace_period=1,
        auth=Auth(KEYS, rules=[Rule("todo", "todo", Resource("service", name, "*"))])
        if auth
        else None,
    )
    service.handle(example.Todo())
    async with service.running():
        yield service


@dataclass
class Session:
    """An MCP client and the notifications it received."""

    client: Client
    notes: list[Any] = field(default_factory=list)

    @property
    def modern(self) -> bool:
        return self.client.protocol_version in MODERN_PROTOCOL_VERSIONS

    async def tools(self) -> dict[str, types.Tool]:
        with anyio.fail_after(REQUEST_TIMEOUT):
            listed = await self.client.list_tools()
        return {t.name: t for t in listed.tools}

    async def call(self, name: str, arguments: dict[str, Any], **kw: Any) -> types.CallToolResult:
        with anyio.fail_after(REQUEST_TIMEOUT):
            return await self.client.call_tool(name, arguments, **kw)

    async def changed_by(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` and wait until the server says the tool list changed."""
        if self.modern:
            async with self.client.listen(tools_list_changed=True) as events:
                await action()
                with anyio.fail_after(CHANGE_TIMEOUT):
                    async for _ in events:
                        return
        seen = self._changes()
        await action()
        with anyio.fail_after(CHANGE_TIMEOUT):
            while self._changes() == seen:
                await anyio.sleep(0.02)

    def _changes(self) -> int:
        return sum(isinstance(n, types.ToolListChangedNotification) for n in self.notes)


@asynccontextmanager
async def connected(server: Any, mode: str) -> AsyncIterator[Session]:
    notes: list[Any] = []

    async def on_message(message: Any) -> None:
        notes.append(message)

    async with Client(server, mode=mode, message_handler=on_message) as client:
        yield Session(client, notes)


def stdio(etcd: ServerProcess, *args: str, **env: str) -> StdioServerParameters:
    """``micro mcp`` on the test's event loop (``--backend``), with the test's etcd."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "micro.cli", "--backend", sniffio.current_async_library(), "mcp", *args],
        env={
            **os.environ,
            "MICRO_REGISTRY": "etcd://" + etcd.url.removeprefix("http://"),
            **env,
        },
    )


def http(url: str, bearer: str | None = None) -> AbstractAsyncContextManager[Any]:
    headers = {"authorization": f"Bearer {bearer}"} if bearer else {}
    return streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=30))


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """The client's protocol: the current one (``auto``), or the handshake era."""
    return str(request.param)


@pytest.fixture
async def gateway(registry: MemoryRegistry) -> AsyncIterator[str]:
    async with open_gateway("127.0.0.1:0", registry=registry) as bound:
        yield f"http://{bound}/mcp"


# -- what both transports do -----------------------------------------------------


async def check_tools(session: Session, name: str) -> None:
    """Names, descriptions and schemas from the registry record of the todo example."""
    expected = [f"{name}.Todo.{m}" for m in ("Add", "Complete", "Export", "List")]
    with anyio.fail_after(CHANGE_TIMEOUT):
        # The service may have registered just before the MCP server read the registry.
        while True:
            tools = await session.tools()
            if sorted(t for t in tools if t.startswith(name + ".")) == expected:
                break
            await anyio.sleep(0.05)
    add = tools[f"{name}.Todo.Add"]
    assert add.description is not None
    assert add.description.startswith("Add a task to the to-do list and return it with its id.")
    assert "due: the date it is due" in add.description  # the parameters, from the docstring
    assert add.input_schema["type"] == "object"
    assert add.input_schema["required"] == ["title"]
    assert add.input_schema["properties"]["tags"]["type"] == "array"
    assert add.output_schema is not None
    assert add.output_schema["properties"]["id"] == {"type": "integer"}
    complete = tools[f"{name}.Todo.Complete"]
    assert complete.annotations is not None and complete.annotations.idempotent_hint
    export = tools[f"{name}.Todo.Export"]
    assert export.description is not None and "Streams its answer" in export.description
    assert export.output_schema is not None
    assert export.output_schema["required"] == ["messages", "truncated"]


async def check_calls(session: Session, name: str) -> None:
    added = await session.call(f"{name}.Todo.Add", {"title": "renew passport", "tags": ["home"]})
    assert not added.is_error, added.content
    assert added.structured_content == {
        "id": 1,
        "title": "renew passport",
        "done": False,
        "due": None,
        "tags": ["home"],
    }
    assert json.loads(text(added)) == added.structured_content
    await session.call(f"{name}.Todo.Add", {"title": "water plants", "tags": ["home"]})

    # A server stream: the messages collected, and progress per message.
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    exported = await session.call(f"{name}.Todo.Export", {}, progress_callback=on_progress)
    assert not exported.is_error, exported.content
    assert exported.structured_content is not None
    assert [t["title"] for t in exported.structured_content["messages"]] == [
        "renew passport",
        "water plants",
    ]
    assert exported.structured_content["truncated"] is False
    assert [p[0] for p in progress] == [1, 2]
    assert progress[0][2] == "1 messages received"

    # A wrong field: a tool error that names the field the service wanted.
    wrong = await session.call(f"{name}.Todo.Add", {"titel": "typo"})
    assert wrong.is_error
    assert "title" in text(wrong)
    assert wrong.structured_content is not None
    assert wrong.structured_content["error"]["code"] == 400
    assert "title" in wrong.structured_content["error"]["detail"]

    # The service's own error, with its code and detail.
    missing = await session.call(f"{name}.Todo.Complete", {"id": 99})
    assert missing.is_error
    assert missing.structured_content == {
        "error": {"id": "todo", "code": 404, "status": "Not Found", "detail": "id: no task 99"}
    }


def text(result: types.CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, types.TextContent)
    return content.text


# -- stdio: `micro mcp` as a subprocess --------------------------------------------


async def test_stdio_tools_calls_streams_and_errors(etcd_server: ServerProcess, mode: str) -> None:
    name = unique("todo")
    async with (
        todo_service(EtcdRegistry(etcd_server.url), name),
        connected(stdio(etcd_server, "--expose", f"{name}.*"), mode) as session,
    ):
        await check_tools(session, name)
        await check_calls(session, name)


async def test_stdio_tool_list_follows_the_registry(etcd_server: ServerProcess, mode: str) -> None:
    first, second = unique("todo"), unique("todo")
    registry = EtcdRegistry(etcd_server.url)
    async with (
        todo_service(registry, first),
        connected(
            stdio(etcd_server, "--expose", f"{first}.*,{second}.*", "--hide", "*.Todo.Export"),
            mode,
        ) as session,
    ):
        tools = await session.tools()
        assert sorted(tools) == [f"{first}.Todo.{m}" for m in ("Add", "Complete", "List")]
        async with anyio.create_task_group() as tg:
            stop = anyio.Event()

            async def run_second(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                async with todo_service(registry, second):
                    task_status.started()
                    await stop.wait()

            async def start() -> None:
                await tg.start(run_second)

            await session.changed_by(start)
            tools = await session.tools()
            assert f"{second}.Todo.Add" in tools
            assert f"{second}.Todo.Export" not in tools  # hidden

            async def stop_second() -> None:
                stop.set()

            await session.changed_by(stop_second)
            tools = await session.tools()
            assert sorted(tools) == [f"{first}.Todo.{m}" for m in ("Add", "Complete", "List")]


async def test_stdio_calls_carry_the_token(etcd_server: ServerProcess) -> None:
    name = unique("todo")
    registry = EtcdRegistry(etcd_server.url)
    async with todo_service(registry, name, auth=True):
        refused = stdio(etcd_server, "--expose", f"{name}.*", MICRO_MCP_TOKEN=token(EVE))
        async with connected(refused, "auto") as session:
            result = await session.call(f"{name}.Todo.List", {})
            assert result.is_error
            assert result.structured_content is not None
            assert result.structured_content["error"]["code"] == 403
            assert "eve" in result.structured_content["error"]["detail"]
        allowed = stdio(etcd_server, "--expose", f"{name}.*", "--token", token(ALICE))
        async with connected(allowed, "legacy") as session:
            result = await session.call(f"{name}.Todo.List", {})
            assert not result.is_error, result.content
            assert result.structured_content == {"tasks": []}


# -- Streamable HTTP: the gateway's /mcp ------------------------------------------------


async def test_http_tools_calls_streams_and_errors(
    registry: MemoryRegistry, gateway: str, mode: str
) -> None:
    async with todo_service(registry, "todo"), connected(http(gateway), mode) as session:
        await check_tools(session, "todo")
        await check_calls(session, "todo")


async def test_http_tool_list_follows_the_registry(
    registry: MemoryRegistry, gateway: str, mode: str
) -> None:
    async with connected(http(gateway), mode) as session:
        assert await session.tools() == {}
        async with anyio.create_task_group() as tg:
            stop = anyio.Event()

            async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                async with todo_service(registry, "todo"):
                    task_status.started()
                    await stop.wait()

            async def start() -> None:
                await tg.start(run)

            async def stop_it() -> None:
                stop.set()

            await session.changed_by(start)
            assert "todo.Todo.Add" in await session.tools()
            await session.changed_by(stop_it)
            assert await session.tools() == {}


async def test_http_calls_carry_the_callers_token(registry: MemoryRegistry, gateway: str) -> None:
    async with todo_service(registry, "todo", auth=True):
        async with connected(http(gateway), "auto") as session:
            result = await session.call("todo.Todo.List", {})
            assert result.is_error
            assert result.structured_content is not None
            assert result.structured_content["error"]["code"] == 401
        async with connected(http(gateway, token(EVE)), "legacy") as session:
            result = await session.call("todo.Todo.List", {})
            assert result.is_error
            assert result.structured_content is not None
            assert result.structured_content["error"]["code"] == 403
        async with connected(http(gateway, token(ALICE)), "auto") as session:
            result = await session.call("todo.Todo.Add", {"title": "file taxes"})
            assert not result.is_error, result.content
            assert result.structured_content is not None
            assert result.structured_content["title"] == "file taxes"


async def test_http_cancelled_request_cancels_the_call(
    registry: MemoryRegistry, gateway: str, mode: str
) -> None:
    service = micro.Service("greeter", address="127.0.0.1:0", registry=registry, grace_period=1)
    greeter = Greeter()
    service.handle(greeter)
    async with service.running(), connected(http(gateway), mode) as session:
        tools = await session.tools()
        # A request that is not an object (bytes) is the tool's `request` argument.
        echo = tools["greeter.Greeter.EchoBytes"]
        assert echo.input_schema["required"] == ["request"]
        with anyio.move_on_after(REQUEST_TIMEOUT) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.call, "greeter.Greeter.Slow", {"seconds": 600})
                while greeter.started == 0:
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
            while not greeter.finished_slow:
                await anyio.sleep(0.02)
        assert not scope.cancelled_caught
        assert greeter.finished_slow == ["cancelled"]


@asynccontextmanager
async def serving(argv: list[str], env: dict[str, str], banner: bytes) -> AsyncIterator[str]:
    """Run a ``micro`` command that serves HTTP; yield the URL its ``banner`` line names.

    The command must stop cleanly on SIGINT.
    """
    process = await anyio.open_process(argv, env=env, stdin=subprocess.DEVNULL)
    try:
        assert process.stderr is not None
        seen = b""
        with anyio.fail_after(REQUEST_TIMEOUT):
            while banner not in seen or not seen.endswith(b"\n"):
                seen += await process.stderr.receive()
        yield seen.decode().split(banner.decode())[1].split()[0]
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(REQUEST_TIMEOUT):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


async def test_micro_mcp_serves_streamable_http_with_address(etcd_server: ServerProcess) -> None:
    name = unique("todo")
    params = stdio(etcd_server, "--expose", f"{name}.*", "--address", "127.0.0.1:0")
    assert params.env is not None
    async with (
        todo_service(EtcdRegistry(etcd_server.url), name),
        serving([params.command, *params.args], params.env, b"MCP serving on ") as url,
    ):
        async with connected(http(url), "legacy") as session:
            await check_tools(session, name)
            listed = await session.call(f"{name}.Todo.List", {})
            assert listed.structured_content == {"tasks": []}
        async with httpx2.AsyncClient() as plain:
            other = await plain.get(url.removesuffix("/mcp") + "/elsewhere")
            assert other.status_code == 404


async def test_micro_gateway_serves_mcp_with_its_patterns(etcd_server: ServerProcess) -> None:
    name = unique("todo")
    params = stdio(etcd_server)
    assert params.env is not None
    argv = [params.command, "-m", "micro.cli", "gateway", "--address", "127.0.0.1:0"]
    argv += ["--mcp-expose", f"{name}.*", "--mcp-hide", "*.Todo.Export,*.Todo.Complete"]
    async with (
        todo_service(EtcdRegistry(etcd_server.url), name),
        serving(argv, params.env, b"gateway serving on ") as url,
        connected(http(url + "/mcp"), "auto") as session,
    ):
        with anyio.fail_after(CHANGE_TIMEOUT):
            while sorted(await session.tools()) != [f"{name}.Todo.Add", f"{name}.Todo.List"]:
                await anyio.sleep(0.05)


class Waiter:
    """A handler that answers once released."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def wait(self, req: dict[str, Any]) -> dict[str, Any]:
        """Wait until released."""
        await self.release.wait()
        return {"released": True}


async def test_http_long_unary_call_reports_progress(registry: MemoryRegistry, mode: str) -> None:
    service = micro.Service("waiter", address="127.0.0.1:0", registry=registry, grace_period=1)
    waiter = Waiter()
    service.handle(waiter)
    progress: list[tuple[float, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, message))
        if len(progress) == 3:
            waiter.release.set()  # the call ends only once progress came

    options = McpOptions(progress_interval=0.01)
    async with (
        service.running(),
        open_gateway("127.0.0.1:0", registry=registry, mcp=options) as bound,
        connected(http(f"http://{bound}/mcp"), mode) as session,
    ):
        result = await session.call("waiter.Waiter.Wait", {}, progress_callback=on_progress)
        assert result.structured_content == {"released": True}
        assert len(progress) >= 3
        done = [p[0] for p in progress]
        assert done == sorted(done) and len(set(done)) == len(done)
        assert progress[0][1] is not None and progress[0][1].startswith("waiting for waiter")
        # Without a progress token, none is sent.
        waiter.release = anyio.Event()
        waiter.release.set()
        assert not (await session.call("waiter.Waiter.Wait", {})).is_error


async def test_stdio_cancelled_request_cancels_the_call(
    etcd_server: ServerProcess, mode: str
) -> None:
    name = unique("greeter")
    service = micro.Service(
        name, address="127.0.0.1:0", registry=EtcdRegistry(etcd_server.url), grace_period=1
    )
    greeter = Greeter()
    service.handle(greeter)
    async with (
        service.running(),
        connected(stdio(etcd_server, "--expose", f"{name}.*"), mode) as session,
    ):
        with anyio.move_on_after(REQUEST_TIMEOUT) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.call, f"{name}.Greeter.Slow", {"seconds": 600})
                while greeter.started == 0:
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
            while not greeter.finished_slow:
                await anyio.sleep(0.02)
        assert not scope.cancelled_caught
        assert greeter.finished_slow == ["cancelled"]
        # The connection goes on serving.
        tools = await session.tools()
        assert f"{name}.Greeter.Hello" in tools


async def test_micro_mcp_fails_clearly_without_a_registry() -> None:
    env = {**os.environ, "MICRO_REGISTRY": f"etcd://127.0.0.1:{free_port()}"}
    with anyio.fail_after(REQUEST_TIMEOUT):
        result = await anyio.run_process(
            [sys.executable, "-m", "micro.cli", "mcp"], env=env, check=False
        )
    assert result.returncode == 1
    [line] = result.stderr.decode().splitlines()
    assert line.startswith("error: etcd: 503 Service Unavailable: etcd at http://127.0.0.1:")
    assert result.stdout == b""  # nothing on the protocol's channel


async def test_micro_describe_shows_the_docstrings(etcd_server: ServerProcess) -> None:
    name = unique("todo")
    params = stdio(etcd_server)
    async with todo_service(EtcdRegistry(etcd_server.url), name):
        with anyio.fail_after(REQUEST_TIMEOUT):
            result = await anyio.run_process(
                [sys.executable, "-m", "micro.cli", "describe", name], env=params.env
            )
    lines = result.stdout.decode().splitlines()
    at = lines.index("Todo.Add (unary)")
    assert lines[at + 1] == "  Add a task to the to-do list and return it with its id."
    assert lines[at + 2].startswith("  request:")


async def test_http_refuses_pages_of_other_origins(registry: MemoryRegistry) -> None:
    """Against DNS rebinding: a request with an Origin the gateway does not allow is
    refused (403); agents (no Origin) and pages of its CORS origins are answered."""
    initialize, accept = INITIALIZE, ACCEPT
    allowed = "https://app.example.com"
    async with (
        open_gateway("127.0.0.1:0", registry=registry, cors_origins=[allowed]) as bound,
        httpx.AsyncClient(base_url=f"http://{bound}", trust_env=False) as http,
    ):
        for origin in ("http://attacker.example", f"http://{bound}", "null"):
            refused = await http.post("/mcp", json=initialize, headers={**accept, "origin": origin})
            assert refused.status_code == 403, (origin, refused.text)
            assert "may not use this MCP endpoint" in refused.json()["detail"]
        for headers in (accept, {**accept, "origin": allowed}):
            answered = await http.post("/mcp", json=initialize, headers=headers)
            assert answered.status_code == 200, answered.text
            assert "serverInfo" in answered.text
    options = McpOptions(allowed_origins=("*",))
    async with (
        open_gateway("127.0.0.1:0", registry=registry, mcp=options) as bound,
        httpx.AsyncClient(base_url=f"http://{bound}", trust_env=False) as http,
    ):
        anyone = await http.post(
            "/mcp", json=initialize, headers={**accept, "origin": "http://attacker.example"}
        )
        assert anyone.status_code == 200, anyone.text
