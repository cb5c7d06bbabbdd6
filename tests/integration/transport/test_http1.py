"""HTTP/1.1 message framing and connection management (RFC 9112 §6 and §9), on raw sockets.

Each test writes bytes to a real service on 127.0.0.1 and reads back exactly
what it answered, so framing mistakes that an HTTP client would paper over
(a response too many, a connection left open, a body read as the next
request) show up. A request whose length cannot be trusted is answered and
the connection closed; the service goes on serving other connections.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
import anyio.abc
import pytest

import micro
from micro.registry import MemoryRegistry
from micro.transport import h1_server

from ..conftest import Greeter

pytestmark = pytest.mark.anyio

#: the body limit of the service under test, small so going over it is cheap
LIMIT = 64 * 1024


@dataclass
class Num:
    value: int


class Counter:
    async def count(self, req: Num) -> AsyncIterator[Num]:
        for i in range(req.value):
            yield Num(i)


@pytest.fixture
async def service() -> AsyncIterator[micro.Service]:
    svc = micro.Service(
        "greeter", address="127.0.0.1:0", registry=MemoryRegistry(), max_message_size=LIMIT
    )
    svc.handle(Greeter())
    svc.handle(Counter())
    async with svc.running():
        yield svc


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def json(self) -> object:
        return json.loads(self.body)


class RawHTTP1:
    """A client that writes exact bytes and parses each response it reads back."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.eof = False

    @classmethod
    async def connect(cls, address: str) -> RawHTTP1:
        host, _, port = address.rpartition(":")
        return cls(await anyio.connect_tcp(host, int(port)))

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def _fill(self) -> None:
        if self.eof:
            raise AssertionError(f"connection closed; unparsed {self.buffer!r}")
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = b""
        if not data:
            self.eof = True
        self.buffer += data

    async def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            await self._fill()
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    async def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            await self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    async def response(self, *, head: bool = False) -> Response:
        """The next response (an interim 1xx one included), within a bounded wait.

        ``head``: it answers a HEAD request, so it has no body whatever its headers say.
        """
        with anyio.fail_after(10):
            version, status, *_ = (await self._line()).split(b" ", 2)
            assert version in (b"HTTP/1.1", b"HTTP/1.0"), version
            resp = Response(int(status))
            while line := await self._line():
                name, _, value = line.partition(b":")
                resp.headers.append((name.decode().lower(), value.decode().strip()))
            if resp.status < 200 or head:
                return resp
            length = resp.header("content-length")
            if resp.header("transfer-encoding") == "chunked":
                while size := int((await self._line()).split(b";")[0], 16):
                    resp.body += await self._exactly(size)
                    assert await self._exactly(2) == b"\r\n"
                while await self._line():  # trailers
                    pass
            elif length is not None:
                resp.body = await self._exactly(int(length))
            else:  # delimited by the end of the connection
                while not self.eof:
                    await self._fill()
                resp.body, self.buffer = self.buffer, b""
            return resp

    async def rest_until_closed(self) -> bytes:
        """Every byte still to come before the server closes; fails if it does not close."""
        with anyio.fail_after(10):
            while not self.eof:
                await self._fill()
        rest, self.buffer = self.buffer, b""
        return rest

    async def aclose(self) -> None:
        await self.stream.aclose()


@pytest.fixture
async def raw(service: micro.Service) -> AsyncIterator[RawHTTP1]:
    conn = await RawHTTP1.connect(service.address)
    yield conn
    await conn.aclose()


def request(
    body: bytes,
    path: bytes = b"/Greeter/Hello",
    *,
    method: bytes = b"POST",
    extra: bytes = b"",
    version: bytes = b"HTTP/1.1",
    chunks: bool = False,
) -> bytes:
    """One request, its body framed by Content-Length or by chunks."""
    framing = b"Transfer-Encoding: chunked\r\n" if chunks else b"Content-Length: %d\r\n" % len(body)
    return b"%s %s %s\r\nHost: x\r\nContent-Type: application/json\r\n%s%s\r\n%s" % (
        method,
        path,
        version,
        framing,
        extra,
        chunked(body) if chunks else body,
    )


def post(
    name: str, path: bytes = b"/Greeter/Hello", *, extra: bytes = b"", version: bytes = b"HTTP/1.1"
) -> bytes:
    return request(json.dumps({"name": name}).encode(), path, extra=extra, version=version)


def chunked(body: bytes, *, size: int = 5) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


async def still_serves(service: micro.Service) -> None:
    conn = await RawHTTP1.connect(service.address)
    try:
        await conn.send(post("again"))
        resp = await conn.response()
        assert (resp.status, resp.json()) == (200, {"message": "Hello again"})
    finally:
        await conn.aclose()


async def test_both_content_length_and_chunked_answer_by_chunks_then_close(
    service: micro.Service, raw: RawHTTP1
) -> None:
    # A front proxy that framed this by Content-Length would see the chunks as
    # the start of another request; so it is answered, then the connection ends
    # and the request pipelined after it is never read.
    body = b'{"name": "chunks"}'
    await raw.send(
        b"POST /Greeter/Hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(body)
        + post("smuggled")
    )
    resp = await raw.response()
    assert (resp.status, resp.json()) == (200, {"message": "Hello chunks"})
    assert resp.header("connection") == "close"
    assert await raw.rest_until_closed() == b""
    await still_serves(service)


async def test_pipelined_requests_are_answered_in_order(raw: RawHTTP1) -> None:
    await raw.send(
        post("a")
        + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        + request(b'{"name": "b"}', chunks=True)
        + request(b'{"value": 3}', b"/Counter/Count")
        + post("d")
    )
    first, health, second, lines, last = [await raw.response() for _ in range(5)]
    assert (first.status, first.json()) == (200, {"message": "Hello a"})
    assert health.status == 200
    assert (second.status, second.json()) == (200, {"message": "Hello b"})
    assert lines.status == 200
    assert [json.loads(x) for x in lines.body.splitlines()] == [{"value": i} for i in range(3)]
    assert (last.status, last.json()) == (200, {"message": "Hello d"})
    # The connection stays open for more.
    await raw.send(post("e"))
    assert (await raw.response()).json() == {"message": "Hello e"}


async def test_connection_close_from_the_client_is_answered_then_closed(raw: RawHTTP1) -> None:
    await raw.send(post("last", extra=b"Connection: close\r\n") + post("never"))
    resp = await raw.response()
    assert (resp.status, resp.json()) == (200, {"message": "Hello last"})
    assert resp.header("connection") == "close"
    assert await raw.rest_until_closed() == b""


async def test_http10_without_keep_alive_is_closed_after_the_answer(raw: RawHTTP1) -> None:
    await raw.send(post("old", version=b"HTTP/1.0"))
    resp = await raw.response()
    assert (resp.status, resp.json()) == (200, {"message": "Hello old"})
    assert await raw.rest_until_closed() == b""


async def test_http10_server_stream_ends_with_the_connection(raw: RawHTTP1) -> None:
    # HTTP/1.0 has no chunked coding: the stream's end is the connection's end.
    await raw.send(
        b"POST /Counter/Count HTTP/1.0\r\nContent-Type: application/json\r\n"
        b"Content-Length: 12\r\n\r\n"
        b'{"value": 2}'
    )
    resp = await raw.response()
    assert resp.status == 200
    assert resp.header("transfer-encoding") is None
    assert [json.loads(x) for x in resp.body.splitlines()] == [{"value": 0}, {"value": 1}]


async def test_expect_100_continue_is_answered_before_the_body_is_sent(raw: RawHTTP1) -> None:
    body = b'{"name": "patient"}'
    await raw.send(
        b"POST /Greeter/Hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    interim = await raw.response()
    assert interim.status == 100
    await raw.send(body)
    resp = await raw.response()
    assert (resp.status, resp.json()) == (200, {"message": "Hello patient"})
    # And the connection goes on.
    await raw.send(post("next"))
    assert (await raw.response()).json() == {"message": "Hello next"}


@pytest.mark.parametrize(
    ("path", "length", "status"),
    [(b"/Greeter/Nope", 10, 404), (b"/Greeter/Hello", LIMIT + 1, 413)],
    ids=["unknown-endpoint", "too-large"],
)
async def test_expect_100_continue_refused_without_reading_the_body(
    service: micro.Service, raw: RawHTTP1, path: bytes, length: int, status: int
) -> None:
    await raw.send(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (path, length)
    )
    resp = await raw.response()  # the final answer, with no 100 before it
    assert resp.status == status
    assert resp.header("connection") == "close"
    assert await raw.rest_until_closed() == b""
    await still_serves(service)


async def test_expect_100_continue_from_http10_is_ignored(raw: RawHTTP1) -> None:
    await raw.send(post("old", extra=b"Expect: 100-continue\r\n", version=b"HTTP/1.0"))
    resp = await raw.response()
    assert (resp.status, resp.json()) == (200, {"message": "Hello old"})


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 11\r\n\r\nhello world",
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"x" * 12),
    ],
    ids=["content-length", "chunked"],
)
async def test_a_body_on_get_is_read_and_the_next_request_follows(
    raw: RawHTTP1, framing: bytes
) -> None:
    await raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\n" + framing + post("after"))
    health = await raw.response()
    assert health.status == 200
    resp = await raw.response()
    assert (resp.status, resp.json()) == (200, {"message": "Hello after"})


async def test_a_refused_request_with_a_small_body_keeps_the_connection(raw: RawHTTP1) -> None:
    # Not a call (GET), or an unknown endpoint: the body is read and dropped, so
    # the next request on the connection is read from where it starts.
    await raw.send(
        b"GET /Greeter/Hello HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n"
        b'{"name": "x"}' + post("nope", b"/Greeter/Nope") + post("after")
    )
    refused, unknown, resp = [await raw.response() for _ in range(3)]
    assert refused.status == 405
    assert unknown.status == 404
    assert refused.header("connection") is None
    assert (resp.status, resp.json()) == (200, {"message": "Hello after"})


BAD_FRAMING = {
    "content-length-not-a-number": b"Content-Length: ten\r\n\r\n0123456789",
    "content-length-negative": b"Content-Length: -5\r\n\r\n",
    "content-length-plus-sign": b"Content-Length: +5\r\n\r\n12345",
    "content-length-two-values": b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n123456",
    "content-length-list": b"Content-Length: 5, 6\r\n\r\n123456",
    "content-length-huge": b"Content-Length: 1" + b"0" * 40 + b"\r\n\r\n",
    "transfer-encoding-gzip": b"Transfer-Encoding: gzip\r\n\r\nxxxx",
    "transfer-encoding-chunked-not-last": b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "transfer-encoding-twice": (
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "chunk-size-not-hex": b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\nxx\r\n",
    "chunk-without-crlf": b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    "chunk-extension-too-long": (
        b"Transfer-Encoding: chunked\r\n\r\n5;x=" + b"a" * (80 * 1024) + b"\r\nhello\r\n"
    ),
    # Spellings one parser may take for chunked and another ignore.
    "transfer-encoding-space-before-colon": (
        b"Content-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"
    ),
    "transfer-encoding-xchunked": b"Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "transfer-encoding-vertical-tab": (
        b"Content-Length: 5\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("framing", BAD_FRAMING.values(), ids=BAD_FRAMING.keys())
async def test_a_body_length_that_cannot_be_trusted_is_400_and_closes(
    service: micro.Service, raw: RawHTTP1, framing: bytes
) -> None:
    await raw.send(
        b"POST /Greeter/Hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + framing
        + post("smuggled")
    )
    resp = await raw.response()
    assert resp.status == 400
    error = resp.json()
    assert isinstance(error, dict)
    assert error["code"] == 400 and error["id"] == "greeter"
    assert resp.header("connection") == "close"
    assert await raw.rest_until_closed() == b""
    await still_serves(service)


async def test_oversized_request_line_is_414_and_closes(
    service: micro.Service, raw: RawHTTP1
) -> None:
    await raw.send(b"GET /" + b"a" * (128 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    resp = await raw.response()
    assert resp.status == 414
    assert resp.header("connection") == "close"
    await raw.rest_until_closed()
    await still_serves(service)


async def test_oversized_header_section_is_431_and_closes(
    service: micro.Service, raw: RawHTTP1
) -> None:
    await raw.send(post("big", extra=b"X-Big: " + b"a" * (128 * 1024) + b"\r\n"))
    resp = await raw.response()
    assert resp.status == 431
    assert resp.header("connection") == "close"
    await raw.rest_until_closed()
    await still_serves(service)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /Greeter/Hello HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1),
        b"POST /Greeter/Hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"x" * (LIMIT + 1), size=4096),
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1),
        b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunked(b"x" * (LIMIT + 1), size=4096),
    ],
    ids=["call-content-length", "call-chunked", "get-content-length", "get-chunked"],
)
async def test_a_body_over_the_limit_is_413_and_closes(
    service: micro.Service, raw: RawHTTP1, request_bytes: bytes
) -> None:
    await raw.send(request_bytes)
    resp = await raw.response()
    assert resp.status == 413
    assert resp.header("connection") == "close"
    await raw.rest_until_closed()
    await still_serves(service)


async def test_garbage_is_400_and_the_service_goes_on(
    service: micro.Service, raw: RawHTTP1
) -> None:
    await raw.send(b"\x00\x01 not http at all\r\n\r\n")
    resp = await raw.response()
    assert resp.status == 400
    assert resp.header("connection") == "close"
    assert await raw.rest_until_closed() == b""
    await still_serves(service)


async def test_head_is_answered_with_headers_only(raw: RawHTTP1) -> None:
    await raw.send(
        b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /Greeter/Hello HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    head = await raw.response(head=True)
    refused = await raw.response(head=True)
    get = await raw.response()
    assert head.status == 200
    assert refused.status == 405
    assert get.status == 200
    assert head.header("content-length") == str(len(get.body))


async def test_expect_100_continue_without_a_body_gets_no_interim_answer(raw: RawHTTP1) -> None:
    await raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n")
    resp = await raw.response()
    assert resp.status == 200
    assert resp.header("connection") is None


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(h1_server, "REQUEST_HEAD_TIMEOUT", 0.5)
    monkeypatch.setattr(h1_server, "BODY_IDLE_TIMEOUT", 0.5)


@pytest.mark.usefixtures("short_timeouts")
async def test_an_idle_kept_alive_connection_is_closed_in_time(
    service: micro.Service, raw: RawHTTP1
) -> None:
    await raw.send(post("once"))
    assert (await raw.response()).json() == {"message": "Hello once"}
    assert await raw.rest_until_closed() == b""
    await still_serves(service)


@pytest.mark.usefixtures("short_timeouts")
async def test_a_head_that_does_not_finish_in_time_is_408_and_closes(
    service: micro.Service, raw: RawHTTP1
) -> None:
    # One header line and then nothing: the connection is not held forever.
    await raw.send(b"POST /Greeter/Hello HTTP/1.1\r\nHost: x\r\n")
    resp = await raw.response()
    assert resp.status == 408
    assert resp.header("connection") == "close"
    assert await raw.rest_until_closed() == b""
    await still_serves(service)


@pytest.mark.parametrize("path", [b"/Greeter/Hello", b"/Greeter/Nope"], ids=["call", "refused"])
@pytest.mark.usefixtures("short_timeouts")
async def test_a_body_that_stalls_is_408_and_closes(
    service: micro.Service, raw: RawHTTP1, path: bytes
) -> None:
    await raw.send(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" % path + b'{"name": '
    )
    resp = await raw.response()
    assert resp.status == (408 if path == b"/Greeter/Hello" else 404)
    assert resp.header("connection") == "close"
    assert await raw.rest_until_closed() == b""
    await still_serves(service)


async def test_an_upgrade_to_h2c_is_declined_and_the_connection_goes_on(raw: RawHTTP1) -> None:
    # curl --http2 asks so on a plain port; h2c is spoken with prior knowledge only.
    upgrade = (
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n"
    )
    await raw.send(
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + upgrade + b"\r\n" + post("up", extra=upgrade)
    )
    health, resp = await raw.response(), await raw.response()
    assert health.status == 200
    assert health.header("upgrade") is None
    assert (resp.status, resp.json()) == (200, {"message": "Hello up"})
    await raw.send(post("after"))
    assert (await raw.response()).json() == {"message": "Hello after"}
