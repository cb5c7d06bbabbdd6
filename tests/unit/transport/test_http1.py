"""The HTTP/1.1 rules the server adds to h11's, on requests parsed by h11 from bytes."""

from __future__ import annotations

import h11
import pytest

from micro.errors import BadRequest
from micro.transport.http1 import closes_connection, declared_length, protocol_error

from .test_sans_io import FORBIDDEN, imports_of


def parse(head: bytes) -> h11.Request:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    return event


def refusal(data: bytes, max_head: int = 16 * 1024) -> h11.RemoteProtocolError:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)
    conn.receive_data(data)
    with pytest.raises(h11.RemoteProtocolError) as info:
        while conn.next_event() is not h11.NEED_DATA:
            pass
    return info.value


def test_both_framing_headers_close_the_connection_whatever_their_order() -> None:
    assert closes_connection(parse(b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n"))
    assert closes_connection(parse(b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"))


@pytest.mark.parametrize("head", [b"", b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n"])
def test_one_framing_header_keeps_the_connection(head: bytes) -> None:
    assert not closes_connection(parse(head))


@pytest.mark.parametrize(
    ("head", "length"),
    [
        (b"", 0),
        (b"Content-Length: 12\r\n", 12),
        (b"Content-Length: 7, 7\r\n", 7),
        (b"Transfer-Encoding: chunked\r\n", None),
        (b"Content-Length: 99\r\nTransfer-Encoding: chunked\r\n", None),
    ],
    ids=["none", "length", "repeated-length", "chunked", "chunked-wins"],
)
def test_declared_length(head: bytes, length: int | None) -> None:
    assert declared_length(parse(head)) == length


def test_a_head_over_the_limit_is_431() -> None:
    data = b"POST / HTTP/1.1\r\nX-Big: " + b"a" * 20_000
    error = protocol_error(refusal(data), unread=data)
    assert error.code == 431
    assert error.status == "Request Header Fields Too Large"


def test_a_request_line_over_the_limit_is_414() -> None:
    data = b"GET /" + b"a" * 20_000
    error = protocol_error(refusal(data), unread=data)
    assert error.code == 414
    assert error.status == "Request-URI Too Long"


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: ten\r\n",
        b"Content-Length: 1\r\nContent-Length: 2\r\n",
        b"Transfer-Encoding: gzip\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
    ],
    ids=["not-a-number", "two-lengths", "not-chunked", "unknown-coding"],
)
def test_framing_h11_refuses_is_400(head: bytes) -> None:
    exc = refusal(b"POST / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n")
    error = protocol_error(exc)
    assert isinstance(error, BadRequest)
    assert error.code == 400
    assert "malformed HTTP/1.1" in error.detail


def test_the_rules_do_no_io() -> None:
    outside, _ = imports_of("micro.transport.http1")
    assert outside.isdisjoint(FORBIDDEN), sorted(outside & FORBIDDEN)


def test_an_over_long_chunk_line_is_400_not_431() -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1024)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert isinstance(conn.next_event(), h11.Request)
    conn.receive_data(b"5;x=" + b"a" * 2048)
    with pytest.raises(h11.RemoteProtocolError) as info:
        conn.next_event()
    error = protocol_error(info.value, in_body=True)
    assert error.code == 400
    assert "body" in error.detail
