"""micro.transport.headers: metadata, grpc-message encoding and endpoint paths."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from micro.transport.headers import (
    RESERVED,
    decode_grpc_message,
    encode_grpc_message,
    endpoint_from_path,
    metadata_from_headers,
    metadata_to_headers,
    path_from_endpoint,
)

# -- metadata -----------------------------------------------------------------


def test_metadata_from_headers_keeps_user_headers() -> None:
    headers = [("x-user", "ada"), ("x-request-id", "42"), ("tenant", "t1")]
    assert metadata_from_headers(headers) == {"x-user": "ada", "x-request-id": "42", "tenant": "t1"}


def test_metadata_from_headers_joins_repeats() -> None:
    headers = [("x-tag", "a"), ("x-other", "o"), ("x-tag", "b"), ("x-tag", "c")]
    assert metadata_from_headers(headers) == {"x-tag": "a,b,c", "x-other": "o"}


@pytest.mark.parametrize(
    "name",
    [
        ":method",
        ":path",
        ":authority",
        ":scheme",
        ":status",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-status",
        "grpc-message",
        "grpc-anything-new",
        *sorted(RESERVED),
    ],
)
def test_metadata_from_headers_drops_reserved_names(name: str) -> None:
    assert metadata_from_headers([(name, "v"), ("x-keep", "k")]) == {"x-keep": "k"}


def test_metadata_from_headers_keeps_binary_values_untouched() -> None:
    assert metadata_from_headers([("trace-bin", "AAEC")]) == {"trace-bin": "AAEC"}


def test_metadata_to_headers() -> None:
    assert metadata_to_headers({"X-User": "ada", "tenant": "t1"}) == [
        ("x-user", "ada"),
        ("tenant", "t1"),
    ]


def test_metadata_to_headers_stringifies_values() -> None:
    assert metadata_to_headers({"x-n": 5}) == [("x-n", "5")]  # type: ignore[dict-item]


def test_metadata_to_headers_empty() -> None:
    assert metadata_to_headers({}) == []


@pytest.mark.parametrize(
    "name",
    [
        ":path",
        ":authority",
        "grpc-timeout",
        "grpc-status",
        "Grpc-Status",
        "GRPC-MESSAGE",
        "Content-Type",
        *sorted(RESERVED),
    ],
)
def test_metadata_to_headers_refuses_reserved_names(name: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        metadata_to_headers({"x-ok": "1", name: "spoofed"})


@pytest.mark.parametrize("name", ["micro-trace", "Micro-Id", "micro-from-service"])
def test_metadata_to_headers_refuses_every_micro_name(name: str) -> None:
    with pytest.raises(ValueError, match="reserved"):
        metadata_to_headers({name: "v"})


@pytest.mark.parametrize(
    "md",
    [
        {"x-md": "a\r\nb"},
        {"x-md": "a\nb"},
        {"x-md": "a\x00b"},
        {"bad name": "v"},
        {"": "v"},
        {"x-md:evil": "v"},
    ],
)
def test_metadata_to_headers_refuses_invalid_headers(md: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        metadata_to_headers(md)


@given(
    st.dictionaries(
        st.from_regex(r"\Ax-[a-z0-9-]{1,20}\Z"),
        st.from_regex(r"\A[ -~]{0,30}\Z"),
        max_size=5,
    )
)
def test_metadata_round_trip(md: dict[str, str]) -> None:
    assert metadata_from_headers(metadata_to_headers(md)) == md


# -- grpc-message -------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "encoded"),
    [
        ("", ""),
        ("not found", "not found"),
        ("100%", "100%25"),
        ("line\nbreak", "line%0Abreak"),
        ("tab\there", "tab%09here"),
        ("café", "caf%C3%A9"),
        ("☃", "%E2%98%83"),
        ("del\x7f", "del%7F"),
        ("a/b?c=d&e", "a/b?c=d&e"),
        ("~!@#$^&*()", "~!@#$^&*()"),
    ],
)
def test_encode_grpc_message(message: str, encoded: str) -> None:
    assert encode_grpc_message(message) == encoded


@given(st.text())
def test_encoded_grpc_message_is_printable_ascii(message: str) -> None:
    encoded = encode_grpc_message(message)
    assert all(0x20 <= ord(c) <= 0x7E for c in encoded)


@given(st.text())
def test_grpc_message_round_trip(message: str) -> None:
    assert decode_grpc_message(encode_grpc_message(message)) == message


def test_decode_grpc_message_tolerates_bad_escapes() -> None:
    # The spec: a receiver must not fail on an invalid percent-encoding.
    assert decode_grpc_message("100%") == "100%"
    assert decode_grpc_message("%zz") == "%zz"
    assert decode_grpc_message("%FF") == "\ufffd"


# -- endpoint paths -----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/Helloworld/Greeting", "Helloworld.Greeting"),
        ("/helloworld.Greeter/SayHello", "helloworld.Greeter.SayHello"),
        ("/a.b.c.Svc/M", "a.b.c.Svc.M"),
        ("/Helloworld/Greeting/", "Helloworld.Greeting"),
        ("Helloworld/Greeting", "Helloworld.Greeting"),
        ("/Helloworld/Greeting?x=1&y=2", "Helloworld.Greeting"),
    ],
)
def test_endpoint_from_path(path: str, endpoint: str) -> None:
    assert endpoint_from_path(path) == endpoint


@pytest.mark.parametrize(
    "path", ["/", "", "//", "/Helloworld", "/Helloworld/", "//Greeting", "/?x=1", "/Helloworld?x"]
)
def test_paths_without_an_endpoint(path: str) -> None:
    assert endpoint_from_path(path) is None


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        ("Helloworld.Greeting", "/Helloworld/Greeting"),
        ("helloworld.Greeter.SayHello", "/helloworld.Greeter/SayHello"),
        ("a.b.c.Svc.M", "/a.b.c.Svc/M"),
    ],
)
def test_path_from_endpoint(endpoint: str, path: str) -> None:
    assert path_from_endpoint(endpoint) == path


_NAME = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,15}\Z")


@given(st.lists(_NAME, min_size=2, max_size=5))
def test_endpoint_path_round_trip(parts: list[str]) -> None:
    endpoint = ".".join(parts)
    assert endpoint_from_path(path_from_endpoint(endpoint)) == endpoint
