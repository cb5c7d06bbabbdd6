"""The gateway's pure parts: routes, stream framing, readable schemas, health messages,
and the command's parsing of metadata and JSON."""

from __future__ import annotations

import pytest

from micro.cli._app import UsageError, parse_json, parse_metadata
from micro.errors import NotFound
from micro.gateway.app import _route
from micro.gateway.inspect import readable_schema
from micro.health import ServingStatus, decode_response, encode_response
from micro.transport.lines import frame


@pytest.mark.parametrize(
    ("path", "header", "expected"),
    [
        ("/greeter/Greeter.Hello", "", ("greeter", "Greeter.Hello")),
        ("/greeter/Greeter/Hello", "", ("greeter", "Greeter.Hello")),
        ("/greeter", "Greeter.Hello", ("greeter", "Greeter.Hello")),
        ("/greeter/", "Greeter.Hello", ("greeter", "Greeter.Hello")),
    ],
)
def test_routes(path: str, header: str, expected: tuple[str, str]) -> None:
    headers = [("micro-endpoint", header)] if header else []
    assert _route(path, headers) == expected


@pytest.mark.parametrize(
    ("path", "header"),
    [("/", ""), ("/greeter", ""), ("/greeter/hello", ""), ("/a/b/c/d", ""), ("/", "X.Y")],
)
def test_routes_that_name_no_endpoint(path: str, header: str) -> None:
    headers = [("micro-endpoint", header)] if header else []
    with pytest.raises(NotFound, match="no route for POST"):
        _route(path, headers)


def test_stream_frames() -> None:
    assert frame("application/x-ndjson", b'{"a":1}') == b'{"a":1}\n'
    assert frame("application/x-ndjson", b'{"code":500}', error=True) == (
        b'{"error": {"code":500}}\n'
    )
    assert frame("text/event-stream", b'{"a":1}') == b'data: {"a":1}\n\n'
    assert frame("text/event-stream", b"{}", error=True) == b"event: error\ndata: {}\n\n"


def test_readable_schema_resolves_the_top_reference() -> None:
    req = {"title": "Req", "type": "object", "properties": {"name": {"type": "string"}}}
    assert readable_schema({"$ref": "#/$defs/Req", "$defs": {"Req": req}}) == req
    other = {"type": "object"}
    assert readable_schema({"$ref": "#/$defs/Req", "$defs": {"Req": req, "Other": other}}) == {
        **req,
        "$defs": {"Other": other},
    }
    assert readable_schema({"type": "string"}) == {"type": "string"}
    assert readable_schema({}) == {}


@pytest.mark.parametrize("status", list(ServingStatus))
def test_health_responses_round_trip(status: ServingStatus) -> None:
    assert decode_response(encode_response(status)) == status


def test_health_response_with_an_unknown_status_is_unknown() -> None:
    assert decode_response(b"\x08\x63") == ServingStatus.UNKNOWN


def test_metadata_and_json_parsing() -> None:
    assert parse_metadata(["X-Tenant=acme", "authorization=Bearer a=b"]) == {
        "x-tenant": "acme",
        "authorization": "Bearer a=b",
    }
    with pytest.raises(UsageError, match="-H takes key=value"):
        parse_metadata(["novalue"])
    with pytest.raises(UsageError, match="=x"):
        parse_metadata(["=x"])
    assert parse_json('{"a": [1]}', "the request") == {"a": [1]}
    with pytest.raises(UsageError, match="the request is not valid JSON"):
        parse_json("{", "the request")
