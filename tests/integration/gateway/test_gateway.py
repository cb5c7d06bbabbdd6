"""The HTTP API gateway and service.asgi(): through httpx's ASGI transport, and over
real sockets with hypercorn (httpx and curl)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import anyio
import httpx
import pytest

import micro
from micro.gateway import Gateway, bind, open_gateway, serve_asgi, serve_gateway
from micro.gateway.server import bound_address
from micro.registry import MemoryRegistry

from ...servers import require_binary
from ..conftest import Greeter

pytestmark = pytest.mark.anyio


@dataclass
class Num:
    value: int


class Numbers:
    def __init__(self) -> None:
        self.forever_ended = anyio.Event()

    async def count(self, req: Num) -> AsyncIterator[Num]:
        for i in range(req.value):
            yield Num(i)

    async def count_then_fail(self, req: Num) -> AsyncIterator[Num]:
        yield Num(0)
        raise micro.Conflict("stopped after one")

    async def total(self, reqs: AsyncIterator[Num]) -> Num:
        return Num(sum([r.value async for r in reqs]))

    async def forever(self, req: Num) -> AsyncIterator[Num]:
        try:
            i = 0
            while True:
                yield Num(i)
                i += 1
                await anyio.sleep(0.01)
        finally:
            self.forever_ended.set()


@pytest.fixture
async def gateway(
    greeter_service: tuple[micro.Service, Greeter], registry: MemoryRegistry
) -> AsyncIterator[httpx.AsyncClient]:
    service = micro.Service("numbers", address="127.0.0.1:0", registry=registry)
    service.handle(Numbers())
    async with service.running(), micro.Client(registry=registry) as client:
        app = Gateway(client, cors_origins=["http://allowed.example"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield http


async def test_calls_by_path_and_by_header(gateway: httpx.AsyncClient) -> None:
    for resp in [
        await gateway.post("/greeter/Greeter.Hello", json={"name": "alice"}),
        await gateway.post("/greeter/Greeter/Hello", json={"name": "alice"}),
        await gateway.post(
            "/greeter", json={"name": "alice"}, headers={"Micro-Endpoint": "Greeter.Hello"}
        ),
    ]:
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "application/json"
        assert resp.json() == {"message": "Hello alice"}


async def test_headers_become_metadata_and_timeout(gateway: httpx.AsyncClient) -> None:
    resp = await gateway.post(
        "/greeter/Greeter.Meta",
        json={},
        headers={
            "Authorization": "Bearer t0ken",
            "X-Tenant": "acme",
            "Micro-Timeout": "5s",
            "Cookie": "session=1",
        },
    )
    assert resp.status_code == 200, resp.text
    metadata = resp.json()["metadata"]
    # The auth hook: the Authorization header reaches the service as metadata.
    assert metadata["authorization"] == "Bearer t0ken"
    assert metadata["x-tenant"] == "acme"
    assert "cookie" not in metadata
    assert 0 < resp.json()["remaining"] <= 5


async def test_server_stream_as_ndjson_and_sse(gateway: httpx.AsyncClient) -> None:
    ndjson = await gateway.post(
        "/numbers/Numbers.Count", json={"value": 3}, headers={"Accept": "application/x-ndjson"}
    )
    assert ndjson.status_code == 200
    assert ndjson.headers["content-type"] == "application/x-ndjson"
    assert [json.loads(line) for line in ndjson.text.splitlines()] == [
        {"value": 0},
        {"value": 1},
        {"value": 2},
    ]
    # Without an Accept header, a streaming endpoint answers NDJSON too.
    plain = await gateway.post("/numbers/Numbers.Count", json={"value": 2})
    assert plain.headers["content-type"] == "application/x-ndjson"
    assert plain.text == '{"value":0}\n{"value":1}\n'
    sse = await gateway.post(
        "/numbers/Numbers.Count", json={"value": 2}, headers={"Accept": "text/event-stream"}
    )
    assert sse.headers["content-type"] == "text/event-stream"
    assert sse.text == 'data: {"value":0}\n\ndata: {"value":1}\n\n'
    # An error after the first message ends the stream with an error event.
    failed = await gateway.post(
        "/numbers/Numbers.CountThenFail", json={"value": 1}, headers={"Accept": "text/event-stream"}
    )
    assert failed.status_code == 200
    events = failed.text.split("\n\n")
    assert events[0] == 'data: {"value":0}'
    assert events[1].startswith("event: error\ndata: ")
    assert json.loads(events[1].split("data: ", 1)[1])["code"] == 409
    # An error before any message is the HTTP status.
    unknown = await gateway.post(
        "/numbers/Numbers.Nope", json={}, headers={"Accept": "application/x-ndjson"}
    )
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "unknown endpoint Numbers.Nope"


async def test_stream_with_timeout_ends_with_an_error_event(gateway: httpx.AsyncClient) -> None:
    resp = await gateway.post(
        "/numbers/Numbers.Forever",
        json={"value": 0},
        headers={"Accept": "text/event-stream", "Micro-Timeout": "0.3"},
    )
    assert resp.status_code == 200
    events = resp.text.rstrip("\n").split("\n\n")
    assert events[0] == 'data: {"value":0}'
    assert events[-1].startswith("event: error\ndata: ")
    assert json.loads(events[-1].split("data: ", 1)[1])["code"] == 408


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "detail"),
    [
        ("POST", "/nobody/Greeter.Hello", b"{}", {}, 404, "service nobody not found"),
        ("POST", "/greeter/Greeter.Nope", b"{}", {}, 404, "unknown endpoint Greeter.Nope"),
        ("POST", "/greeter/Greeter.Hello", b"{bad", {}, 400, "invalid JSON body"),
        ("POST", "/greeter/Greeter.Hello", b'{"name": 1}', {}, 400, "$.name"),
        ("POST", "/greeter/Greeter.Hello", b"x", {"content-type": "text/plain"}, 415, "text/plain"),
        ("POST", "/greeter", b"{}", {}, 404, "no route for POST /greeter"),
        ("POST", "/greeter/Greeter.Fail", b'{"name": "x"}', {}, 500, "internal error"),
        ("POST", "/greeter/Greeter.Missing", b'{"name": "x"}', {}, 404, "no user x"),
        ("POST", "/greeter/Greeter.Slow", b'{"seconds": 10}', {"micro-timeout": "0.2"}, 408, ""),
        ("POST", "/greeter/Greeter.Hello", b"{}", {"micro-timeout": "soon"}, 400, "Micro-Timeout"),
        ("PUT", "/greeter/Greeter.Hello", b"{}", {}, 405, "method PUT not allowed"),
        ("GET", "/nothing/here", b"", {}, 404, "no page /nothing/here"),
        ("GET", "/api/services/nobody", b"", {}, 404, "nobody"),
    ],
)
async def test_bad_input_gets_the_micro_error(
    gateway: httpx.AsyncClient,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    detail: str,
) -> None:
    resp = await gateway.request(method, path, content=body, headers=headers)
    assert resp.status_code == status, resp.text
    error = resp.json()
    assert set(error) == {"id", "code", "detail", "status"}
    assert error["code"] == status
    assert detail in error["detail"]


async def test_gateway_mounted_under_a_prefix(
    greeter_service: tuple[micro.Service, Greeter], client: micro.Client
) -> None:
    transport = httpx.ASGITransport(app=Gateway(client), root_path="/api/v1")
    async with httpx.AsyncClient(transport=transport, base_url="http://stack") as http:
        resp = await http.post("/api/v1/greeter/Greeter.Hello", json={"name": "p"})
        assert resp.json() == {"message": "Hello p"}
        assert (await http.get("/api/v1/api/services")).json()[0]["name"] == "greeter"
        # The dashboard's relative links need the slash: asked for without it, it redirects.
        bare = await http.get("/api/v1?x=1")
        assert bare.status_code == 308 and bare.headers["location"] == "/api/v1/?x=1"
        page = await http.get("/api/v1", follow_redirects=True)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]


async def test_cors(gateway: httpx.AsyncClient) -> None:
    allowed = {"Origin": "http://allowed.example"}
    preflight = await gateway.options(
        "/greeter/Greeter.Hello",
        headers={**allowed, "Access-Control-Request-Headers": "content-type, authorization"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "http://allowed.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "content-type, authorization"
    call = await gateway.post("/greeter/Greeter.Hello", json={"name": "a"}, headers=allowed)
    assert call.headers["access-control-allow-origin"] == "http://allowed.example"
    error = await gateway.post("/greeter/Greeter.Nope", json={}, headers=allowed)
    assert error.headers["access-control-allow-origin"] == "http://allowed.example"
    other = await gateway.post(
        "/greeter/Greeter.Hello", json={"name": "a"}, headers={"Origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers


async def test_dashboard_api(gateway: httpx.AsyncClient) -> None:
    services = (await gateway.get("/api/services")).json()
    assert {"name": "greeter", "versions": ["latest"], "nodes": 1} in services
    [greeter] = (await gateway.get("/api/services/greeter")).json()
    endpoints = {e["name"]: e for e in greeter["endpoints"]}
    assert endpoints["Greeter.Hello"]["request"]["$defs"]["Req"]["properties"] == {
        "name": {"type": "string"}
    }
    assert endpoints["Greeter.Hello"]["metadata"]["kind"] == "unary"
    [health] = (await gateway.get("/api/health/greeter")).json()
    assert health["status"] == "SERVING"
    assert health["address"] == greeter["nodes"][0]["address"]
    page = await gateway.get("/")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>micro dashboard</title>" in page.text


async def test_gateway_over_hypercorn_with_httpx_and_curl(
    greeter_service: tuple[micro.Service, Greeter], registry: MemoryRegistry
) -> None:
    curl = require_binary("curl", "curl")
    numbers = micro.Service("numbers", address="127.0.0.1:0", registry=registry)
    numbers_handler = Numbers()
    numbers.handle(numbers_handler)
    async with numbers.running(), open_gateway("127.0.0.1:0", registry=registry) as address:
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            resp = await http.post("/greeter/Greeter.Hello", json={"name": "h"})
            assert resp.json() == {"message": "Hello h"}
        json_call = [curl, "-sS", "-XPOST", "-H", "Content-Type: application/json"]
        unary = await anyio.run_process(
            [*json_call, "-d", '{"name": "curl"}', f"http://{address}/greeter/Greeter.Hello"]
        )
        assert json.loads(unary.stdout) == {"message": "Hello curl"}
        count_url = f"http://{address}/numbers/Numbers.Count"
        streamed = await anyio.run_process(
            [
                *json_call,
                "-N",
                "-H",
                "Accept: application/x-ndjson",
                "-d",
                '{"value": 2}',
                count_url,
            ]
        )
        assert streamed.stdout.decode().splitlines() == ['{"value":0}', '{"value":1}']
        # A client that goes away mid-stream cancels the call and the handler.
        async with (
            httpx.AsyncClient(base_url=f"http://{address}") as http,
            http.stream("POST", "/numbers/Numbers.Forever", json={"value": 0}) as feed,
        ):
            async for line in feed.aiter_lines():
                assert line == '{"value":0}'
                break
        with anyio.fail_after(10):
            await numbers_handler.forever_ended.wait()
        nobody_url = f"http://{address}/nobody/Greeter.Hello"
        missing = await anyio.run_process(
            [*json_call, "-o", "-", "-w", " %{http_code}", "-d", "{}", nobody_url]
        )
        assert missing.stdout.decode().endswith("404")


async def test_serve_gateway_until_cancelled(
    greeter_service: tuple[micro.Service, Greeter], registry: MemoryRegistry
) -> None:
    async with anyio.create_task_group() as tg:
        address = await tg.start(partial(serve_gateway, "127.0.0.1:0", registry=registry))
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            resp = await http.post("/greeter/Greeter.Hello", json={"name": "served"})
            assert resp.json() == {"message": "Hello served"}
        tg.cancel_scope.cancel()


async def test_service_asgi_streams_server_streams(
    greeter_service: tuple[micro.Service, Greeter],
) -> None:
    service, _ = greeter_service
    numbers = Numbers()
    service.handle(numbers)
    app = service.asgi()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc"
    ) as http:
        lines = await http.post("/Numbers/Count", json={"value": 3})
        assert (lines.status_code, lines.headers["content-type"]) == (200, "application/x-ndjson")
        assert [json.loads(x) for x in lines.text.splitlines()] == [{"value": i} for i in range(3)]
        sse = await http.post(
            "/Numbers/Count", json={"value": 2}, headers={"Accept": "text/event-stream"}
        )
        assert sse.headers["content-type"] == "text/event-stream"
        assert sse.text == 'data: {"value":0}\n\ndata: {"value":1}\n\n'
        empty = await http.post("/Numbers/Count", json={"value": 0})
        assert (empty.status_code, empty.text) == (200, "")
        # An error after the first message is the stream's last line.
        failing = await http.post("/Numbers/CountThenFail", json={"value": 1})
        first, last = (json.loads(x) for x in failing.text.splitlines())
        assert first == {"value": 0}
        assert last["error"]["code"] == 409 and last["error"]["detail"] == "stopped after one"
        # Before it, the HTTP status.
        assert (await http.post("/Numbers/Count", content=b"{bad")).status_code == 400
        msgpack_request = await http.post(
            "/Numbers/Count",
            content=b"\x81\xa5value\x01",
            headers={"content-type": "application/msgpack"},
        )
        assert msgpack_request.status_code == 415
    # Over a real socket: a client that goes away cancels the handler.
    sock = bind("127.0.0.1:0")
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_asgi, app, sock)
            async with (
                httpx.AsyncClient(base_url=f"http://{bound_address(sock)}") as http,
                http.stream("POST", "/Numbers/Forever", json={"value": 0}) as resp,
            ):
                seen = []
                async for line in resp.aiter_lines():
                    seen.append(json.loads(line)["value"])
                    if len(seen) == 3:
                        break
            assert seen == [0, 1, 2]
            with anyio.fail_after(10):
                await numbers.forever_ended.wait()
            tg.cancel_scope.cancel()


async def test_service_asgi(greeter_service: tuple[micro.Service, Greeter]) -> None:
    service, _ = greeter_service
    service.handle(Numbers())
    app = service.asgi()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
        resp = await http.post("/Greeter/Hello", json={"name": "asgi"})
        assert resp.json() == {"message": "Hello asgi"}
        resp = await http.post(
            "/", json={"name": "hdr"}, headers={"Micro-Endpoint": "Greeter.Hello"}
        )
        assert resp.json() == {"message": "Hello hdr"}
        assert (await http.post("/Greeter/Nope", json={})).status_code == 404
        assert (await http.post("/Greeter/Hello", content=b"{bad")).status_code == 400
        assert (await http.post("/Greeter/Fail", json={"name": "x"})).status_code == 500
        live = await http.get("/health")
        assert (live.status_code, live.json()["service"]) == (200, "greeter")
        streaming = await http.post("/Numbers/Total", json={"value": 1})
        assert streaming.status_code == 415
        assert streaming.json()["detail"].startswith("Numbers.Total streams requests")
    # Mounted under a prefix, the app serves the paths below it.
    mounted = httpx.ASGITransport(app=app, root_path="/svc")
    async with httpx.AsyncClient(transport=mounted, base_url="http://stack") as http:
        resp = await http.post("/svc/Greeter/Hello", json={"name": "mounted"})
        assert resp.json() == {"message": "Hello mounted"}
    # The same app served by hypercorn on a real socket.
    sock = bind("127.0.0.1:0")
    with sock:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_asgi, app, sock)
            async with httpx.AsyncClient(base_url=f"http://{bound_address(sock)}") as http:
                resp = await http.post("/Greeter/Hello", json={"name": "hyper"})
                assert resp.json() == {"message": "Hello hyper"}
            tg.cancel_scope.cancel()
