"""Bad input gets a clear error and never harms other calls or connections."""

from __future__ import annotations

import struct

import anyio
import httpx
import msgspec
import pytest

import micro

from ..conftest import Greeter, Req, Resp, Sleep
from ..rawh2 import RawH2

pytestmark = pytest.mark.anyio

ServiceAndGreeter = tuple[micro.Service, Greeter]


def _grpc_frame(payload: bytes) -> bytes:
    return struct.pack(">BI", 0, len(payload)) + payload


async def _post(
    address: str,
    path: str,
    body: bytes,
    content_type: str = "application/json",
    http2: bool = False,
    **headers: str,
) -> httpx.Response:
    async with httpx.AsyncClient(http1=not http2, http2=http2, timeout=10) as http:
        return await http.post(
            f"http://{address}{path}",
            content=body,
            headers={"content-type": content_type, **headers},
        )


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_unknown_endpoint_is_404(greeter_service: ServiceAndGreeter, http2: bool) -> None:
    service, _ = greeter_service
    r = await _post(service.address, "/Greeter/Nope", b"{}", http2=http2)
    assert r.status_code == 404
    assert r.json() == {
        "id": "greeter",
        "code": 404,
        "detail": "unknown endpoint Greeter.Nope",
        "status": "Not Found",
    }


async def test_unknown_endpoint_is_unimplemented_over_grpc(
    greeter_service: ServiceAndGreeter, client: micro.Client
) -> None:
    with pytest.raises(micro.NotFound) as info:
        await client.call("greeter", "Greeter.Nope", Req("x"), Resp)
    assert info.value.grpc_status == 12
    assert "Greeter.Nope" in info.value.detail


@pytest.mark.parametrize(
    ("content_type", "body", "expect"),
    [
        ("application/json", b'{"name": ', "malformed JSON"),
        ("application/msgpack", b"\xc1\xc1", "malformed msgpack"),
        ("application/json", b'{"name": 42}', "at `$.name`"),
        ("application/json", b"{}", "missing required field `name`"),
    ],
    ids=["bad-json", "bad-msgpack", "wrong-type", "missing-field"],
)
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_undecodable_body_is_400(
    greeter_service: ServiceAndGreeter, http2: bool, content_type: str, body: bytes, expect: str
) -> None:
    service, _ = greeter_service
    r = await _post(service.address, "/Greeter/Hello", body, content_type, http2=http2)
    assert r.status_code == 400
    assert expect in r.json()["detail"]


async def test_undecodable_grpc_message_is_invalid_argument(
    greeter_service: ServiceAndGreeter,
) -> None:
    service, _ = greeter_service
    raw = await RawH2.connect(service.address)
    sid = raw.start("/Greeter/Hello", "application/grpc+json", [("te", "trailers")])
    raw.conn.send_data(sid, _grpc_frame(b'{"name": 7}'), end_stream=True)
    await raw.flush()
    resp = await raw.response(sid)
    await raw.aclose()
    status = resp.trailers.get("grpc-status", resp.headers.get("grpc-status"))
    assert status == "3"
    message = resp.trailers.get("grpc-message", resp.headers.get("grpc-message", ""))
    assert "%60%24.name%60" in message or "$.name" in message


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
async def test_unsupported_content_type_is_415(
    greeter_service: ServiceAndGreeter, http2: bool
) -> None:
    service, _ = greeter_service
    r = await _post(
        service.address,
        "/Greeter/Hello",
        b"name=x",
        "application/x-www-form-urlencoded",
        http2=http2,
    )
    assert r.status_code == 415
    assert "application/json" in r.json()["detail"]


async def test_oversized_body_refused_before_it_is_sent_http1(
    greeter_service: ServiceAndGreeter,
) -> None:
    service, _ = greeter_service
    host, port = service.address.rsplit(":", 1)
    async with await anyio.connect_tcp(host, int(port)) as net:
        # Announce 100 MiB and send none of it: the answer must come anyway.
        await net.send(
            b"POST /Greeter/Hello HTTP/1.1\r\nHost: t\r\n"
            b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
        )
        data = b""
        with anyio.fail_after(10):
            while b"\r\n\r\n" not in data:
                data += await net.receive()
    assert data.startswith(b"HTTP/1.1 413 ")


async def test_oversized_body_refused_before_it_is_sent_h2(
    greeter_service: ServiceAndGreeter,
) -> None:
    service, _ = greeter_service
    raw = await RawH2.connect(service.address)
    sid = raw.start("/Greeter/Hello", "application/json", [("content-length", "104857600")])
    await raw.flush()
    with anyio.fail_after(10):
        resp = await raw.response(sid)
    await raw.aclose()
    assert resp.headers[":status"] == "413"


async def test_oversized_grpc_message_refused_from_its_prefix(
    greeter_service: ServiceAndGreeter,
) -> None:
    service, _ = greeter_service
    raw = await RawH2.connect(service.address)
    sid = raw.start("/Greeter/Hello", "application/grpc+json", [("te", "trailers")])
    raw.conn.send_data(sid, struct.pack(">BI", 0, 100 * 1024 * 1024))  # prefix only
    await raw.flush()
    with anyio.fail_after(10):
        resp = await raw.response(sid)
    # The server is still happy to serve the same connection.
    sid2 = raw.start("/Greeter/Hello", "application/grpc+json", [("te", "trailers")])
    raw.conn.send_data(sid2, _grpc_frame(b'{"name": "ok"}'), end_stream=True)
    await raw.flush()
    with anyio.fail_after(10):
        resp2 = await raw.response(sid2)
    await raw.aclose()
    assert resp.headers.get("grpc-status") == "8"
    assert resp2.trailers.get("grpc-status") == "0"
    assert msgspec.json.decode(resp2.body[5:]) == {"message": "Hello ok"}


async def test_max_message_size_is_configurable(registry: micro.registry.MemoryRegistry) -> None:
    service = micro.Service(
        "small", address="127.0.0.1:0", registry=registry, max_message_size=1024
    )
    service.handle(Greeter())
    async with service.running(), micro.Client(registry=registry) as client:
        assert (await client.call("small", "Greeter.Hello", Req("x" * 100), Resp)).message
        with pytest.raises(micro.MicroError) as info:
            await client.call("small", "Greeter.Hello", Req("x" * 2000), Resp)
        assert info.value.grpc_status == 8
        r = await _post(service.address, "/Greeter/Hello", b'{"name": "%s"}' % (b"y" * 2000))
        assert r.status_code == 413


async def test_garbage_instead_of_preface_closes_only_that_connection(
    greeter_service: ServiceAndGreeter, client: micro.Client
) -> None:
    service, _ = greeter_service
    host, port = service.address.rsplit(":", 1)
    async with await anyio.connect_tcp(host, int(port)) as net:
        await net.send(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n\x00\xff" * 4)
        with anyio.fail_after(10):
            try:
                while await net.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass  # closed: what we expect
    assert await client.call("greeter", "Greeter.Hello", Req("still"), Resp) == Resp("Hello still")


async def test_broken_h2_frames_close_only_that_connection(
    greeter_service: ServiceAndGreeter, client: micro.Client
) -> None:
    service, _ = greeter_service
    host, port = service.address.rsplit(":", 1)
    async with await anyio.connect_tcp(host, int(port)) as net:
        settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        data_on_stream_0 = b"\x00\x00\x04\x00\x00\x00\x00\x00\x00" + b"oops"
        await net.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + data_on_stream_0)
        with anyio.fail_after(10):
            try:
                while await net.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    assert await client.call("greeter", "Greeter.Hello", Req("fine"), Resp) == Resp("Hello fine")


async def test_handler_exception_is_500_with_safe_message_and_others_unaffected(
    greeter_service: ServiceAndGreeter, client: micro.Client
) -> None:
    service, _ = greeter_service
    outcomes: list[object] = []

    async def bad() -> None:
        try:
            await client.call("greeter", "Greeter.Fail", Req("x"), Resp)
        except micro.MicroError as exc:
            outcomes.append(exc)

    async def good(i: int) -> None:
        outcomes.append(await client.call("greeter", "Greeter.Hello", Req(str(i)), Resp))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(bad)
            tg.start_soon(good, i)
    errors = [o for o in outcomes if isinstance(o, micro.MicroError)]
    assert len(errors) == 20 and len(outcomes) == 40
    for err in errors:
        assert isinstance(err, micro.InternalServerError)
        assert err.code == 500 and err.grpc_status == 13
        assert "secret" not in err.detail
        assert err.id == "greeter"
    r = await _post(service.address, "/Greeter/Fail", b'{"name": "x"}')
    assert r.status_code == 500
    assert "secret" not in r.text


async def test_handler_micro_error_reaches_caller_intact(
    greeter_service: ServiceAndGreeter, client: micro.Client
) -> None:
    for ct in ("application/grpc+json", "application/json"):
        with pytest.raises(micro.NotFound) as info:
            await client.call("greeter", "Greeter.Missing", Req("zed"), Resp, content_type=ct)
        assert info.value.detail == "no user zed"
        assert info.value.id == "greeter"
        assert info.value.grpc_status == 5


async def test_client_timeout_cancels_server_handler(
    greeter_service: ServiceAndGreeter, client: micro.Client
) -> None:
    _, greeter = greeter_service
    with pytest.raises(micro.Timeout):
        await client.call("greeter", "Greeter.Slow", Sleep(30), Resp, timeout=0.3)
    with anyio.fail_after(10):
        while greeter.finished_slow != ["cancelled"]:
            await anyio.sleep(0.01)


async def test_grpc_timeout_header_is_a_server_side_deadline(
    greeter_service: ServiceAndGreeter,
) -> None:
    service, greeter = greeter_service
    raw = await RawH2.connect(service.address)
    sid = raw.start(
        "/Greeter/Slow", "application/grpc+json", [("te", "trailers"), ("grpc-timeout", "200m")]
    )
    raw.conn.send_data(sid, _grpc_frame(b'{"seconds": 30}'), end_stream=True)
    await raw.flush()
    with anyio.fail_after(10):
        resp = await raw.response(sid)
    await raw.aclose()
    assert resp.headers.get("grpc-status") == "4"
    assert greeter.finished_slow == ["cancelled"]


async def test_cancelled_caller_cancels_server_handler(
    greeter_service: ServiceAndGreeter, client: micro.Client
) -> None:
    _, greeter = greeter_service
    with anyio.move_on_after(0.3):
        await client.call("greeter", "Greeter.Slow", Sleep(30), Resp)
    with anyio.fail_after(10):
        while greeter.finished_slow != ["cancelled"]:
            await anyio.sleep(0.01)
    # The connection is still good for the next call.
    assert await client.call("greeter", "Greeter.Hello", Req("a"), Resp) == Resp("Hello a")


async def test_malformed_grpc_timeout_is_400(greeter_service: ServiceAndGreeter) -> None:
    service, _ = greeter_service
    r = await _post(service.address, "/Greeter/Hello", b'{"name": "x"}', **{"grpc-timeout": "soon"})
    assert r.status_code == 400
    assert "grpc-timeout" in r.json()["detail"]


async def test_get_is_405(greeter_service: ServiceAndGreeter) -> None:
    service, _ = greeter_service
    async with httpx.AsyncClient() as http:
        r = await http.get(f"http://{service.address}/Greeter/Hello")
    assert r.status_code == 405
