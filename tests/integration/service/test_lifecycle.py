"""Service lifecycle: hooks, graceful shutdown, supervision, signals, embedding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest

import micro
from micro.registry import MemoryRegistry

from ..conftest import Greeter, Req, Resp, Sleep

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]


async def test_hooks_run_in_order(registry: MemoryRegistry) -> None:
    calls: list[str] = []
    service = micro.Service("hooks", address="127.0.0.1:0", registry=registry)
    service.handle(Greeter())
    for kind in ("before_start", "after_start", "before_stop", "after_stop"):

        async def hook(kind: str = kind) -> None:
            calls.append(kind)

        getattr(service, kind)(hook)
    async with service.running():
        calls.append("running")
    assert calls == ["before_start", "after_start", "running", "before_stop", "after_stop"]


async def test_registers_while_running_and_deregisters_on_stop(registry: MemoryRegistry) -> None:
    service = micro.Service("reg", address="127.0.0.1:0", registry=registry, version="1.2")
    service.handle(Greeter())
    async with service.running():
        [record] = await registry.get_service("reg")
        assert record.version == "1.2"
        assert [n.address for n in record.nodes] == [service.address]
        names = {e.name for e in record.endpoints}
        assert {"Greeter.Hello", "Greeter.Slow"} <= names
        hello = next(e for e in record.endpoints if e.name == "Greeter.Hello")
        assert hello.request["$defs"]["Req"]["properties"]["name"]["type"] == "string"
    with pytest.raises(micro.NotFound):
        await registry.get_service("reg")


async def test_graceful_stop_finishes_calls_in_flight(registry: MemoryRegistry) -> None:
    service = micro.Service("drain", address="127.0.0.1:0", registry=registry, grace_period=10)
    greeter = Greeter()
    service.handle(greeter)
    deregistered_while_call_in_flight: list[bool] = []

    @service.before_stop
    async def _() -> None:
        deregistered_while_call_in_flight.append(greeter.started == 1)

    results: list[object] = []
    async with micro.Client(registry=registry) as client:
        async with service.running(), anyio.create_task_group() as tg:

            async def slow_call() -> None:
                results.append(await client.call("drain", "Greeter.Slow", Sleep(0.5), Resp))

            tg.start_soon(slow_call)
            with anyio.fail_after(10):
                while greeter.started == 0:
                    await anyio.sleep(0.01)
            # Leaving running() while the call is in flight: the stop waits for it.
        # running() has exited only after the call was answered.
        assert results == [Resp(message="slept")]
        assert greeter.finished_slow == ["done"]
        assert deregistered_while_call_in_flight == [True]
        # And the port is closed now.
        host, port = service.address.rsplit(":", 1)
        with pytest.raises(OSError):
            await anyio.connect_tcp(host, int(port))


async def test_stop_waits_for_in_flight_then_cancels_after_grace(registry: MemoryRegistry) -> None:
    service = micro.Service("grace", address="127.0.0.1:0", registry=registry, grace_period=0.3)
    greeter = Greeter()
    service.handle(greeter)
    async with micro.Client(registry=registry) as client:
        errors: list[BaseException] = []

        async def call() -> None:
            try:
                await client.call("grace", "Greeter.Slow", Sleep(60), Resp)
            except micro.MicroError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg, service.running():
            tg.start_soon(call)
            with anyio.fail_after(10):
                while greeter.started == 0:
                    await anyio.sleep(0.01)
        # Past the grace period the handler was cancelled and the caller told.
        assert greeter.finished_slow == ["cancelled"]
        assert len(errors) == 1 and isinstance(errors[0], micro.Unavailable)


async def test_new_calls_during_drain_are_refused_as_unprocessed(registry: MemoryRegistry) -> None:
    service = micro.Service("refuse", address="127.0.0.1:0", registry=registry, grace_period=10)
    greeter = Greeter()
    service.handle(greeter)
    stop = anyio.Event()

    async def run_service(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with service.running():
            task_status.started()
            await stop.wait()

    outcome: list[object] = []
    async with micro.Client(registry=registry) as client, anyio.create_task_group() as tg:
        await tg.start(run_service)

        async def slow() -> None:
            outcome.append(
                await client.call("refuse", "Greeter.Slow", Sleep(1), Resp, address=service.address)
            )

        tg.start_soon(slow)
        with anyio.fail_after(10):
            while greeter.started == 0:
                await anyio.sleep(0.01)
        assert client._pool is not None
        [conn] = client._pool._connections.values()
        stop.set()
        with anyio.fail_after(10):
            while conn.usable:  # until the GOAWAY arrives
                await anyio.sleep(0.01)
        with pytest.raises(micro.Unavailable) as info:
            await client.call("refuse", "Greeter.Hello", Req("late"), Resp, address=service.address)
        assert getattr(info.value, "unprocessed", False) is True
    assert outcome == [Resp("slept")]


async def test_serve_and_stop(registry: MemoryRegistry) -> None:
    service = micro.Service("serve", address="127.0.0.1:0", registry=registry)
    service.handle(Greeter())

    @service.after_start
    async def _() -> None:
        async with micro.Client(registry=registry) as client:
            assert await client.call("serve", "Greeter.Hello", Req("s"), Resp) == Resp("Hello s")
        service.stop()

    with anyio.fail_after(10):
        await service.serve()


async def test_bind_failure_is_a_clear_start_error(registry: MemoryRegistry) -> None:
    first = micro.Service("a", address="127.0.0.1:0", registry=registry)
    first.handle(Greeter())
    async with first.running():
        second = micro.Service("b", address=first.address, registry=registry)
        second.handle(Greeter())
        with pytest.raises(OSError):
            async with second.running():
                pass


async def test_server_middleware_sees_every_call_in_order(registry: MemoryRegistry) -> None:
    seen: list[str] = []

    async def outer(req: micro.Request, call_next: micro.CallNext) -> object:
        seen.append(f"outer {req.endpoint} {req.metadata.get('x-user', '')}")
        return await call_next(req)

    async def inner(req: micro.Request, call_next: micro.CallNext) -> object:
        seen.append(f"inner {req.body.name}")
        resp = await call_next(req)
        return Resp(message=resp.message.upper())

    async def client_mw(req: micro.ClientRequest, call_next: micro.ClientCallNext) -> object:
        req.metadata["x-user"] = "ann"
        return await call_next(req)

    service = micro.Service("mw", address="127.0.0.1:0", registry=registry, middleware=[outer])
    service.use(inner)
    service.handle(Greeter())
    async with service.running(), micro.Client(registry=registry, middleware=[client_mw]) as c:
        assert await c.call("mw", "Greeter.Hello", Req("bo"), Resp) == Resp("HELLO BO")
    assert seen == ["outer Greeter.Hello ann", "inner bo"]


async def test_middleware_can_refuse_a_call(registry: MemoryRegistry) -> None:
    async def deny(req: micro.Request, call_next: micro.CallNext) -> object:
        if req.metadata.get("authorization") != "Bearer ok":
            raise micro.Unauthorized("who are you?")
        return await call_next(req)

    service = micro.Service("deny", address="127.0.0.1:0", registry=registry, middleware=[deny])
    service.handle(Greeter())
    async with service.running(), micro.Client(registry=registry) as c:
        with pytest.raises(micro.Unauthorized) as info:
            await c.call("deny", "Greeter.Hello", Req("x"), Resp)
        assert info.value.grpc_status == 16
        ok = await c.call(
            "deny", "Greeter.Hello", Req("x"), Resp, metadata={"Authorization": "Bearer ok"}
        )
        assert ok == Resp("Hello x")


async def test_metadata_and_deadline_propagate_downstream(registry: MemoryRegistry) -> None:
    class Front:
        def __init__(self, service: micro.Service) -> None:
            self.service = service

        async def relay(self, req: dict[str, str]) -> dict[str, object]:
            result: dict[str, object] = await self.service.call("greeter", "Greeter.Meta", {})
            return result

    greeter = micro.Service("greeter", address="127.0.0.1:0", registry=registry)
    greeter.handle(Greeter())
    front = micro.Service("front", address="127.0.0.1:0", registry=registry)
    front.handle(Front(front))
    async with greeter.running(), front.running(), micro.Client(registry=registry) as client:
        with micro.context.with_metadata({"X-Trace": "t1"}):
            got = await client.call("front", "Front.Relay", {}, timeout=7)
    assert got["metadata"]["x-trace"] == "t1"
    remaining = got["remaining"]
    assert isinstance(remaining, float) and 0 < remaining < 7


async def test_supervisor_restarts_a_crashing_part_then_gives_up() -> None:
    from micro.supervisor import PartFailed, Supervisor

    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        raise RuntimeError("boom")

    with pytest.raises(BaseExceptionGroup) as info:
        async with anyio.create_task_group() as tg:
            sup = Supervisor(tg, max_restarts=3, window=60, initial_backoff=0.001, max_backoff=0.01)
            sup.start_soon("flaky", flaky)
    assert runs == 4
    [exc] = info.value.exceptions
    assert isinstance(exc, PartFailed) and "flaky crashed 4 times" in str(exc)


async def test_supervisor_restart_keeps_part_running() -> None:
    from micro.supervisor import Supervisor

    runs = 0
    done = anyio.Event()

    async def recovers() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("transient")
        done.set()

    async with anyio.create_task_group() as tg:
        Supervisor(tg, initial_backoff=0.001, max_backoff=0.01).start_soon("recovers", recovers)
        with anyio.fail_after(10):
            await done.wait()
    assert runs == 3


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_helloworld_example_serves_and_stops_cleanly_on_signal(
    backend: str, sig: signal.Signals, unused_tcp_port: int
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "helloworld" / "main.py"),
            "--backend",
            backend,
            "--address",
            f"127.0.0.1:{unused_tcp_port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        body = _post_when_ready(f"http://127.0.0.1:{unused_tcp_port}")
        assert body == {"message": "Hello alice"}
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out.decode()
        assert b"Traceback" not in out
        assert b"stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _post_when_ready(url: str) -> object:
    import time

    deadline = time.monotonic() + 20
    while True:
        try:
            r = httpx.post(
                url,
                json={"name": "alice"},
                headers={"Micro-Endpoint": "Helloworld.Greeting"},
                timeout=5,
            )
            return r.json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_a_client_redials_an_address_whose_server_restarted(
    registry: MemoryRegistry,
) -> None:
    first = micro.Service("phoenix", address="127.0.0.1:0", registry=registry)
    first.handle(Greeter())
    async with micro.Client(registry=registry) as client:
        async with first.running():
            address = first.address
            assert await client.call("phoenix", "Greeter.Hello", Req("a"), Resp) == Resp("Hello a")
        # The connection the client holds got GOAWAY and closed; nobody listens now.
        with pytest.raises(micro.Unavailable):
            await client.call("phoenix", "Greeter.Hello", Req("b"), Resp, address=address)
        second = micro.Service("phoenix", address=address, registry=registry)
        second.handle(Greeter())
        async with second.running():
            # Same client, same address: a new connection, by address and by name.
            reply = await client.call("phoenix", "Greeter.Hello", Req("c"), Resp, address=address)
            assert reply == Resp("Hello c")
            with anyio.fail_after(10):
                while True:
                    try:
                        reply = await client.call("phoenix", "Greeter.Hello", Req("d"), Resp)
                        break
                    except micro.Unavailable:  # the ejected node's backoff is still running
                        await anyio.sleep(0.05)
            assert reply == Resp("Hello d")
