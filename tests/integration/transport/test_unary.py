"""Unary calls end to end: micro client, plain HTTP/1.1 and HTTP/2, curl, grpcio."""

from __future__ import annotations

import shutil
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from google.protobuf.wrappers_pb2 import StringValue

import micro
from micro.registry import MemoryRegistry

from ..conftest import Greeter, Req, Resp

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "content_type",
    [
        "application/grpc+json",
        "application/grpc+msgpack",
        "application/json",
        "application/msgpack",
    ],
)
async def test_call_by_service_name(
    greeter_service: tuple[micro.Service, Greeter], client: micro.Client, content_type: str
) -> None:
    resp = await client.call(
        "greeter", "Greeter.Hello", Req("alice"), Resp, content_type=content_type
    )
    assert resp == Resp(message="Hello alice")


async def test_call_by_address_and_untyped_response(
    greeter_service: tuple[micro.Service, Greeter], client: micro.Client
) -> None:
    service, _ = greeter_service
    resp = await client.call("anything", "Greeter.Hello", {"name": "bob"}, address=service.address)
    assert resp == {"message": "Hello bob"}


async def test_one_service_calls_another(registry: MemoryRegistry) -> None:
    class Front:
        def __init__(self, service: micro.Service) -> None:
            self.service = service

        async def greet(self, req: Req) -> Resp:
            inner = await self.service.call("greeter", "Greeter.Hello", req, Resp)
            return Resp(message=inner.message + "!")

    greeter = micro.Service("greeter", address="127.0.0.1:0", registry=registry)
    greeter.handle(Greeter())
    front = micro.Service("front", address="127.0.0.1:0", registry=registry)
    front.handle(Front(front))
    async with greeter.running(), front.running(), micro.Client(registry=registry) as client:
        assert await client.call("front", "Front.Greet", Req("carol"), Resp) == Resp("Hello carol!")


async def test_many_concurrent_calls_share_one_connection(
    greeter_service: tuple[micro.Service, Greeter], client: micro.Client
) -> None:
    results: list[Resp] = []

    async def one(i: int) -> None:
        results.append(await client.call("greeter", "Greeter.Hello", Req(str(i)), Resp))

    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(one, i)
    assert sorted(r.message for r in results) == sorted(f"Hello {i}" for i in range(200))
    assert client._pool is not None and len(client._pool._connections) == 1


async def test_bytes_endpoint_raw_body(
    greeter_service: tuple[micro.Service, Greeter], client: micro.Client
) -> None:
    data = bytes(range(256)) * 10
    got = await client.call(
        "greeter", "Greeter.EchoBytes", data, bytes, content_type="application/octet-stream"
    )
    assert got == data


async def test_large_message_both_ways(
    greeter_service: tuple[micro.Service, Greeter], client: micro.Client
) -> None:
    name = "x" * (3 * 1024 * 1024)
    resp = await client.call("greeter", "Greeter.Hello", Req(name), Resp)
    assert resp.message == "Hello " + name


async def test_protobuf_types_served_as_application_grpc(
    registry: MemoryRegistry, client: micro.Client
) -> None:
    class Upper:
        async def shout(self, req: StringValue) -> StringValue:
            return StringValue(value=req.value.upper())

    service = micro.Service("upper", address="127.0.0.1:0", registry=registry)
    service.handle(Upper())
    async with service.running():
        got = await client.call("upper", "Upper.Shout", StringValue(value="hi"), StringValue)
        assert got == StringValue(value="HI")
        # The same handler also answers JSON, through protobuf's JSON mapping.
        got = await client.call(
            "upper", "Upper.Shout", "hey", StringValue, content_type="application/grpc+json"
        )
        assert got.value == "HEY"


# -- plain HTTP, as curl and browsers call ---------------------------------------


def _http(http2: bool) -> httpx.AsyncClient:
    return httpx.AsyncClient(http1=not http2, http2=http2, timeout=10)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_plain_json_with_endpoint_header(
    greeter_service: tuple[micro.Service, Greeter], http2: bool
) -> None:
    service, _ = greeter_service
    async with _http(http2) as http:
        r = await http.post(
            f"http://{service.address}",
            headers={"Content-Type": "application/json", "Micro-Endpoint": "Greeter.Hello"},
            content=b'{"name": "alice"}',
        )
    assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.content == b'{"message": "Hello alice"}\n'


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_plain_msgpack_by_path(
    greeter_service: tuple[micro.Service, Greeter], http2: bool
) -> None:
    service, _ = greeter_service
    async with _http(http2) as http:
        r = await http.post(
            f"http://{service.address}/Greeter/Hello",
            headers={"Content-Type": "application/msgpack"},
            content=msgspec.msgpack.encode({"name": "dave"}),
        )
    assert r.status_code == 200
    assert msgspec.msgpack.decode(r.content) == {"message": "Hello dave"}


async def test_keep_alive_serves_many_requests_on_one_http1_connection(
    greeter_service: tuple[micro.Service, Greeter],
) -> None:
    service, _ = greeter_service
    async with _http(False) as http:
        for i in range(20):
            r = await http.post(f"http://{service.address}/Greeter/Hello", json={"name": str(i)})
            assert r.json() == {"message": f"Hello {i}"}


async def test_metadata_travels_as_headers(
    greeter_service: tuple[micro.Service, Greeter],
) -> None:
    service, _ = greeter_service
    async with _http(True) as http:
        r = await http.post(
            f"http://{service.address}/Greeter/Meta",
            headers={"X-Request-Id": "abc", "grpc-timeout": "5S"},
            json={},
        )
    body: dict[str, Any] = r.json()
    assert body["metadata"]["x-request-id"] == "abc"
    assert "content-type" not in body["metadata"]
    assert 0 < body["remaining"] <= 5


curl = shutil.which("curl")


@pytest.mark.skipif(curl is None, reason="curl is not installed")
@pytest.mark.parametrize(
    "extra",
    [
        ["-H", "Micro-Endpoint: Greeter.Hello"],
        ["--http2-prior-knowledge", "-H", "Micro-Endpoint: Greeter.Hello"],
    ],
    ids=["http1", "h2c"],
)
async def test_curl(greeter_service: tuple[micro.Service, Greeter], extra: list[str]) -> None:
    service, _ = greeter_service
    assert curl is not None
    result = await anyio.run_process(
        [
            curl,
            "-sS",
            "-XPOST",
            "-H",
            "Content-Type: application/json",
            *extra,
            "-d",
            '{"name": "alice"}',
            f"http://{service.address}",
        ]
    )
    assert result.stdout == b'{"message": "Hello alice"}\n'
