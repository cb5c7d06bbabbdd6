"""micro.transport.calls: request heads, response headers and trailers."""

import dataclasses
import json

import pytest

from micro import errors
from micro.codec import get
from micro.errors import GrpcStatus, MicroError
from micro.transport.calls import (
    RequestHead,
    grpc_error_headers,
    grpc_response_headers,
    grpc_trailers,
    parse_request_head,
    plain_error,
    plain_response_headers,
)
from micro.transport.headers import decode_grpc_message

Headers = list[tuple[str, str]]


def grpc_request(content_type: str = "application/grpc", *extra: tuple[str, str]) -> Headers:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/helloworld.Greeter/SayHello"),
        (":authority", "localhost:8080"),
        ("content-type", content_type),
        ("te", "trailers"),
        ("user-agent", "grpc-python/1.60"),
        ("grpc-accept-encoding", "identity,deflate,gzip"),
        *extra,
    ]


# -- parse_request_head: endpoint ---------------------------------------------


def test_grpc_call_by_path() -> None:
    head = parse_request_head("POST", "/helloworld.Greeter/SayHello", grpc_request())
    assert head == RequestHead(
        endpoint="helloworld.Greeter.SayHello",
        grpc=True,
        codec=get("proto"),
        content_type="application/grpc",
        timeout=None,
        metadata={},
        content_length=None,
    )


@pytest.mark.parametrize(
    ("content_type", "codec"),
    [
        ("application/grpc", "proto"),
        ("application/grpc+proto", "proto"),
        ("application/grpc+json", "json"),
        ("application/grpc+msgpack", "msgpack"),
    ],
)
def test_grpc_content_type_is_echoed(content_type: str, codec: str) -> None:
    head = parse_request_head("POST", "/A/B", grpc_request(content_type))
    assert head.grpc is True
    assert head.codec is get(codec)
    assert head.content_type == content_type


def test_grpc_micro_endpoint_header_wins_over_the_path() -> None:
    headers = grpc_request("application/grpc+json", ("micro-endpoint", "Other.Method"))
    head = parse_request_head("POST", "/helloworld.Greeter/SayHello", headers)
    assert head.endpoint == "Other.Method"


def test_plain_call_by_path() -> None:
    head = parse_request_head(
        "POST", "/Helloworld/Greeting", [("content-type", "application/json")]
    )
    assert head.endpoint == "Helloworld.Greeting"
    assert head.grpc is False
    assert head.codec is get("json")
    assert head.content_type == "application/json"


def test_plain_call_by_micro_endpoint_header() -> None:
    headers = [("content-type", "application/msgpack"), ("micro-endpoint", "Helloworld.Greeting")]
    head = parse_request_head("POST", "/", headers)
    assert head.endpoint == "Helloworld.Greeting"
    assert head.codec is get("msgpack")
    assert head.metadata == {}


def test_plain_micro_endpoint_header_wins_over_the_path() -> None:
    head = parse_request_head("POST", "/A/B", [("micro-endpoint", "C.D")])
    assert head.endpoint == "C.D"


def test_plain_call_ignores_the_query_string() -> None:
    assert parse_request_head("POST", "/A/B?debug=1", []).endpoint == "A.B"


def test_default_content_type_is_json() -> None:
    head = parse_request_head("POST", "/Helloworld/Greeting", [])
    assert head.grpc is False
    assert head.codec is get("json")
    assert head.content_type == "application/json"


@pytest.mark.parametrize(
    ("content_type", "canonical"),
    [
        ("application/json; charset=utf-8", "application/json"),
        ("text/json", "application/json"),
        ("application/x-msgpack", "application/msgpack"),
        ("application/x-protobuf", "application/protobuf"),
        ("application/octet-stream", "application/octet-stream"),
    ],
)
def test_plain_content_type_is_the_codecs_own(content_type: str, canonical: str) -> None:
    head = parse_request_head("POST", "/A/B", [("content-type", content_type)])
    assert head.content_type == canonical


# -- parse_request_head: refusals ---------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS", "post"])
def test_only_post(method: str) -> None:
    with pytest.raises(errors.MethodNotAllowed) as info:
        parse_request_head(method, "/Helloworld/Greeting", [])
    assert info.value.code == 405
    assert method in info.value.detail


def test_get_on_root_is_405_not_404() -> None:
    with pytest.raises(errors.MethodNotAllowed):
        parse_request_head("GET", "/", [])


@pytest.mark.parametrize("path", ["/", "", "/Helloworld", "/Helloworld/"])
@pytest.mark.parametrize("content_type", ["application/json", "application/grpc"])
def test_no_endpoint_is_404(path: str, content_type: str) -> None:
    with pytest.raises(errors.NotFound) as info:
        parse_request_head("POST", path, [("content-type", content_type)])
    assert info.value.code == 404
    assert info.value.grpc_status == GrpcStatus.UNIMPLEMENTED
    assert "Micro-Endpoint" in info.value.detail


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/grpc+xml", "application/grpc-web"],
)
def test_unsupported_content_type_is_415(content_type: str) -> None:
    with pytest.raises(errors.UnsupportedMediaType) as info:
        parse_request_head("POST", "/A/B", [("content-type", content_type)])
    assert info.value.code == 415


# -- parse_request_head: timeout, length, metadata ----------------------------


@pytest.mark.parametrize(("value", "seconds"), [("5S", 5.0), ("100m", 0.1), ("1H", 3600.0)])
def test_grpc_timeout(value: str, seconds: float) -> None:
    head = parse_request_head(
        "POST", "/A/B", grpc_request("application/grpc", ("grpc-timeout", value))
    )
    assert head.timeout == pytest.approx(seconds)
    assert "grpc-timeout" not in head.metadata


def test_grpc_timeout_on_a_plain_call() -> None:
    head = parse_request_head("POST", "/A/B", [("grpc-timeout", "2S")])
    assert head.timeout == 2.0


def test_malformed_grpc_timeout_is_400() -> None:
    with pytest.raises(errors.BadRequest, match="grpc-timeout"):
        parse_request_head("POST", "/A/B", grpc_request("application/grpc", ("grpc-timeout", "5s")))


@pytest.mark.parametrize(("value", "length"), [("0", 0), ("12", 12), ("4194304", 4194304)])
def test_content_length(value: str, length: int) -> None:
    head = parse_request_head("POST", "/A/B", [("content-length", value)])
    assert head.content_length == length
    assert "content-length" not in head.metadata


@pytest.mark.parametrize("value", ["", "abc", "1.5", "0x10"])
def test_invalid_content_length_is_400(value: str) -> None:
    with pytest.raises(errors.BadRequest, match="content-length"):
        parse_request_head("POST", "/A/B", [("content-length", value)])


@pytest.mark.parametrize("value", ["-5", "+5", " 5", "1_0"])
def test_non_digit_content_length_is_400(value: str) -> None:
    with pytest.raises(errors.BadRequest, match="content-length"):
        parse_request_head("POST", "/A/B", [("content-length", value)])


def test_metadata_excludes_reserved_names() -> None:
    headers = grpc_request(
        "application/grpc+json",
        ("grpc-timeout", "1S"),
        ("micro-endpoint", "A.B"),
        ("micro-service", "caller"),
        ("content-length", "5"),
        ("accept-encoding", "gzip"),
        ("x-user", "ada"),
        ("x-tag", "a"),
        ("x-tag", "b"),
        ("trace-bin", "AAEC"),
    )
    head = parse_request_head("POST", "/A/B", headers)
    assert head.metadata == {"x-user": "ada", "x-tag": "a,b", "trace-bin": "AAEC"}


# -- responses ----------------------------------------------------------------


def test_grpc_response_headers() -> None:
    assert grpc_response_headers("application/grpc+json") == [
        (":status", "200"),
        ("content-type", "application/grpc+json"),
        ("grpc-accept-encoding", "identity,gzip,deflate"),
    ]


def test_grpc_trailers_ok() -> None:
    assert grpc_trailers(None) == [("grpc-status", "0")]


def test_grpc_trailers_for_an_error() -> None:
    err = errors.NotFound("no user 100% gone\nreally", id="users")
    trailers = dict(grpc_trailers(err))
    assert list(trailers) == ["grpc-status", "grpc-message", "micro-error"]
    assert trailers["grpc-status"] == str(GrpcStatus.NOT_FOUND)
    assert trailers["grpc-message"] == "no user 100%25 gone%0Areally"
    assert decode_grpc_message(trailers["grpc-message"]) == err.detail
    assert json.loads(trailers["micro-error"]) == err.to_dict()


def test_grpc_trailers_carry_the_exact_grpc_status() -> None:
    err = errors.from_grpc(GrpcStatus.ALREADY_EXISTS, "taken")
    trailers = dict(grpc_trailers(err))
    assert trailers["grpc-status"] == "6"
    back = MicroError.parse(trailers["micro-error"], grpc_status=int(trailers["grpc-status"]))
    assert back == err


def test_grpc_trailers_round_trip_every_class() -> None:
    for cls in (errors.BadRequest, errors.Unauthorized, errors.Timeout, errors.Unavailable):
        err = cls("d", id="svc")
        trailers = dict(grpc_trailers(err))
        back = MicroError.parse(trailers["micro-error"], grpc_status=int(trailers["grpc-status"]))
        assert type(back) is cls
        assert back == err


@pytest.mark.parametrize("detail", ["plain", "line\nbreak", 'quote " and \\', "tab\tdel\x7f"])
def test_grpc_trailer_values_are_single_line(detail: str) -> None:
    for _, value in grpc_trailers(errors.BadRequest(detail)):
        assert "\r" not in value and "\n" not in value and "\x00" not in value


@pytest.mark.parametrize("detail", ["café", "☃", "名前がありません"])
def test_grpc_trailer_values_are_printable_ascii(detail: str) -> None:
    for _, value in grpc_trailers(errors.BadRequest(detail, id="svc")):
        assert all(0x20 <= ord(c) <= 0x7E for c in value), value


def test_grpc_error_headers_are_trailers_only() -> None:
    err = errors.Unavailable("draining", id="svc")
    headers = grpc_error_headers("application/grpc+msgpack", err)
    assert headers[:2] == [(":status", "200"), ("content-type", "application/grpc+msgpack")]
    assert headers[3:] == grpc_trailers(err)


def test_plain_response_headers() -> None:
    assert plain_response_headers("application/json", 17) == [
        (":status", "200"),
        ("content-type", "application/json"),
        ("content-length", "17"),
    ]


@pytest.mark.parametrize(
    "err",
    [errors.NotFound("nope", id="svc"), errors.PayloadTooLarge("big"), MicroError("x", code=418)],
)
def test_plain_error(err: MicroError) -> None:
    headers, body = plain_error(err)
    assert headers == [
        (":status", str(err.code)),
        ("content-type", "application/json"),
        ("content-length", str(len(body))),
    ]
    assert json.loads(body) == err.to_dict()
    assert MicroError.parse(body, code=err.code) == err


def test_plain_error_length_counts_bytes_not_characters() -> None:
    headers, body = plain_error(errors.BadRequest("☃☃☃"))
    assert dict(headers)["content-length"] == str(len(body))
    assert body.isascii()  # non-ASCII detail is escaped, so the JSON also fits a trailer


def test_a_head_seen_before_gives_each_call_its_own_metadata() -> None:
    headers = grpc_request("application/grpc", ("x-tenant", "acme"))
    first = parse_request_head("POST", "/helloworld.Greeter/SayHello", headers)
    first.metadata["x-added-by-handler"] = "1"
    again = parse_request_head("POST", "/helloworld.Greeter/SayHello", headers)
    assert again == dataclasses.replace(first, metadata={"x-tenant": "acme"})
    assert again.metadata is not first.metadata


def test_a_refused_head_is_refused_again() -> None:
    for _ in range(2):
        with pytest.raises(errors.MethodNotAllowed):
            parse_request_head("GET", "/helloworld.Greeter/SayHello", grpc_request())
