"""micro.codec: typed decoding, content-type lookup and the built-in codecs."""

from dataclasses import dataclass, field
from typing import Any, TypedDict

import msgspec
import pydantic
import pytest
from google.protobuf import struct_pb2, wrappers_pb2

from micro import codec
from micro.codec import Codec, content_types, for_content_type, get, parse_content_type
from micro.codec import base as codec_base
from micro.errors import BadRequest, UnsupportedMediaType


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Shape:
    name: str
    points: list[Point] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


class Person(TypedDict):
    name: str
    age: int


class User(pydantic.BaseModel):
    name: str
    age: int
    email: str | None = None


class Team(pydantic.BaseModel):
    lead: User
    members: list[User] = []


TYPED = ["json", "msgpack"]


def raw(name: str, value: Any) -> bytes:
    """Bytes a peer would send: plain data in the codec's own format."""
    return msgspec.json.encode(value) if name == "json" else msgspec.msgpack.encode(value)


@pytest.fixture(params=TYPED)
def typed(request: pytest.FixtureRequest) -> Codec:
    return get(request.param)


# -- lookup -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["json", "msgpack", "proto", "bytes"])
def test_builtin_codecs_by_name(name: str) -> None:
    c = get(name)
    assert isinstance(c, Codec)
    assert c.name == name


def test_unknown_codec_name() -> None:
    with pytest.raises(UnsupportedMediaType, match="xml"):
        get("xml")


def test_content_types() -> None:
    assert content_types() == [
        "application/json",
        "application/msgpack",
        "application/octet-stream",
        "application/protobuf",
    ]


@pytest.mark.parametrize(
    ("content_type", "grpc", "name"),
    [
        ("application/grpc", True, "proto"),
        ("application/grpc+proto", True, "proto"),
        ("application/grpc+json", True, "json"),
        ("application/grpc+msgpack", True, "msgpack"),
        ("application/grpc+bytes", True, "bytes"),
        ("application/grpc+json; charset=utf-8", True, "json"),
        ("application/grpc;foo=bar", True, "proto"),
        ("application/json", False, "json"),
        ("application/json; charset=utf-8", False, "json"),
        ("application/json;charset=UTF-8", False, "json"),
        ("Application/JSON", False, "json"),
        ("  application/json  ", False, "json"),
        ("text/json", False, "json"),
        ("application/json-rpc", False, "json"),
        ("application/msgpack", False, "msgpack"),
        ("application/x-msgpack", False, "msgpack"),
        ("application/vnd.msgpack", False, "msgpack"),
        ("application/protobuf", False, "proto"),
        ("application/x-protobuf", False, "proto"),
        ("application/proto", False, "proto"),
        ("application/octet-stream", False, "bytes"),
    ],
)
def test_parse_content_type(content_type: str, grpc: bool, name: str) -> None:
    is_grpc, c = parse_content_type(content_type)
    assert is_grpc is grpc
    assert c.name == name
    assert for_content_type(content_type) is c


@pytest.mark.parametrize(
    "content_type",
    [
        "",
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/grpc+xml",
        "application/grpc-web",
        "application/grpc-web+proto",
        "application/grpcx",
        "application/grpc+",
    ],
)
def test_unsupported_content_types(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        parse_content_type(content_type)
    assert info.value.code == 415
    with pytest.raises(UnsupportedMediaType):
        for_content_type(content_type)


def test_unsupported_plain_content_type_lists_the_supported_ones() -> None:
    with pytest.raises(UnsupportedMediaType, match="application/json") as info:
        parse_content_type("text/plain")
    assert "text/plain" in info.value.detail


def test_register_a_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    # Register into copies of the tables so the codec does not outlive the test.
    get("json")
    monkeypatch.setattr(codec_base, "_by_name", dict(codec_base._by_name))
    monkeypatch.setattr(codec_base, "_by_content_type", dict(codec_base._by_content_type))

    class Upper:
        name = "test-upper"
        content_type = "application/x-test-upper"

        def encode(self, value: Any) -> bytes:
            return str(value).upper().encode()

        def decode(self, data: bytes, into: Any = Any) -> Any:
            return data.decode()

    c = Upper()
    codec.register(c, "text/x-test-upper")
    assert get("test-upper") is c
    assert for_content_type("application/x-test-upper") is c
    assert for_content_type("text/x-test-upper") is c
    assert parse_content_type("application/grpc+test-upper") == (True, c)
    assert "application/x-test-upper" in content_types()


# -- typed decoding: json and msgpack -----------------------------------------


def test_round_trip_dataclass(typed: Codec) -> None:
    value = Shape("tri", [Point(0, 0), Point(1, 2)], {"k": "v"})
    assert typed.decode(typed.encode(value), Shape) == value


def test_decode_dataclass_from_peer_data(typed: Codec) -> None:
    data = raw(typed.name, {"name": "sq", "points": [{"x": 1, "y": 2}]})
    assert typed.decode(data, Shape) == Shape("sq", [Point(1, 2)])


def test_decode_typed_dict(typed: Codec) -> None:
    data = raw(typed.name, {"name": "ada", "age": 36})
    assert typed.decode(data, Person) == {"name": "ada", "age": 36}


def test_decode_dict_and_list(typed: Codec) -> None:
    assert typed.decode(raw(typed.name, {"a": 1}), dict) == {"a": 1}
    assert typed.decode(raw(typed.name, {"a": 1}), dict[str, int]) == {"a": 1}
    assert typed.decode(raw(typed.name, [1, 2]), list[int]) == [1, 2]
    assert typed.decode(raw(typed.name, [Point(1, 2)]), list[Point]) == [Point(1, 2)]


def test_decode_untyped(typed: Codec) -> None:
    value = {"a": [1, "two", None, True]}
    assert typed.decode(typed.encode(value)) == value
    assert typed.decode(typed.encode(value), Any) == value


def test_decode_pydantic(typed: Codec) -> None:
    user = User(name="ada", age=36)
    back = typed.decode(typed.encode(user), User)
    assert isinstance(back, User)
    assert back == user


def test_decode_nested_pydantic(typed: Codec) -> None:
    data = raw(typed.name, {"lead": {"name": "a", "age": 1}, "members": [{"name": "b", "age": 2}]})
    team = typed.decode(data, Team)
    assert team.members[0].name == "b"


def test_encode_pydantic_is_its_json_shape(typed: Codec) -> None:
    user = User(name="ada", age=36)
    assert typed.decode(typed.encode(user)) == {"name": "ada", "age": 36, "email": None}


def test_decode_protobuf_wrapper(typed: Codec) -> None:
    msg = wrappers_pb2.StringValue(value="hello")
    encoded = typed.encode(msg)
    assert typed.decode(encoded) == "hello"  # the proto3 JSON mapping of a wrapper
    assert typed.decode(encoded, wrappers_pb2.StringValue) == msg


def test_decode_protobuf_struct(typed: Codec) -> None:
    msg = struct_pb2.Struct()
    msg.update({"name": "ada", "tags": ["a", "b"], "nested": {"ok": True}})
    back = typed.decode(typed.encode(msg), struct_pb2.Struct)
    assert isinstance(back, struct_pb2.Struct)
    assert back == msg


def test_decode_protobuf_from_peer_data(typed: Codec) -> None:
    back = typed.decode(raw(typed.name, {"a": 1.5}), struct_pb2.Struct)
    assert back["a"] == 1.5


def test_decoders_are_reusable(typed: Codec) -> None:
    for i in range(3):
        assert typed.decode(raw(typed.name, {"x": i, "y": 0}), Point) == Point(i, 0)


# -- typed decoding: errors ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("json", b'{"name": '),
        ("json", b"{bad json}"),
        ("json", b""),
        ("json", b"\xff"),
        ("msgpack", b"\xc1"),
        ("msgpack", b"\x82\xa1a"),
        ("msgpack", b""),
    ],
)
@pytest.mark.parametrize("into", [Shape, Person, dict, User, struct_pb2.Struct, Any])
def test_malformed_input_is_a_bad_request(name: str, data: bytes, into: Any) -> None:
    what = {"json": "JSON", "msgpack": "msgpack"}[name]
    with pytest.raises(BadRequest, match=f"malformed {what}") as info:
        get(name).decode(data, into)
    assert info.value.code == 400


@pytest.mark.parametrize(
    ("value", "into", "path"),
    [
        ({"x": "1", "y": 2}, Point, "$.x"),
        ({"name": 5}, Shape, "$.name"),
        ({"name": "s", "points": [{"x": 1, "y": 2}, {"x": 1, "y": None}]}, Shape, "$.points[1].y"),
        ({"name": "s", "tags": {"k": 1}}, Shape, "$.tags[...]"),
        ({"name": "ada", "age": "old"}, Person, "$.age"),
        ([1, "two"], list[int], "$[1]"),
        ({"a": "b"}, dict[str, int], "$[...]"),
    ],
)
def test_wrong_field_type_names_the_path(typed: Codec, value: Any, into: Any, path: str) -> None:
    with pytest.raises(BadRequest) as info:
        typed.decode(raw(typed.name, value), into)
    assert f"`{path}`" in info.value.detail
    assert info.value.code == 400


def test_missing_field_is_named(typed: Codec) -> None:
    with pytest.raises(BadRequest, match="`y`"):
        typed.decode(raw(typed.name, {"x": 1}), Point)


def test_wrong_top_level_type(typed: Codec) -> None:
    with pytest.raises(BadRequest, match="Expected `object`"):
        typed.decode(raw(typed.name, [1, 2]), Point)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"name": 1, "age": 2}, "`name`"),
        ({"name": "ada"}, "`age`"),
        ({"name": "ada", "age": "x"}, "`age`"),
        ([], "`$`"),
    ],
)
def test_pydantic_field_error_is_named(typed: Codec, value: Any, where: str) -> None:
    with pytest.raises(BadRequest) as info:
        typed.decode(raw(typed.name, value), User)
    assert where in info.value.detail


def test_nested_pydantic_field_error_is_named(typed: Codec) -> None:
    data = raw(typed.name, {"lead": {"name": "a", "age": 1}, "members": [{"name": "b"}]})
    with pytest.raises(BadRequest, match=r"`members\.0\.age`"):
        typed.decode(data, Team)


def test_all_pydantic_errors_are_reported(typed: Codec) -> None:
    with pytest.raises(BadRequest) as info:
        typed.decode(raw(typed.name, {}), User)
    assert "`name`" in info.value.detail
    assert "`age`" in info.value.detail


@pytest.mark.parametrize(
    ("value", "into"),
    [
        (5, struct_pb2.Struct),
        ([1], struct_pb2.Struct),
        ({"a": 1}, struct_pb2.ListValue),
    ],
)
def test_protobuf_shape_error_is_a_bad_request(typed: Codec, value: Any, into: Any) -> None:
    with pytest.raises(BadRequest):
        typed.decode(raw(typed.name, value), into)


@pytest.mark.parametrize(
    ("value", "into"),
    [
        (5, wrappers_pb2.StringValue),
        ({"value": "x"}, wrappers_pb2.StringValue),
        ({"x": 1}, wrappers_pb2.Int32Value),
        (5, wrappers_pb2.BytesValue),
    ],
)
def test_protobuf_wrapper_of_the_wrong_type_is_a_bad_request(
    typed: Codec, value: Any, into: Any
) -> None:
    with pytest.raises(BadRequest):
        typed.decode(raw(typed.name, value), into)


def test_encode_unknown_type_is_a_type_error(typed: Codec) -> None:
    with pytest.raises(TypeError):
        typed.encode(object())


# -- bytes --------------------------------------------------------------------


def test_bytes_codec_encode() -> None:
    c = get("bytes")
    assert c.encode(b"\x00\xff") == b"\x00\xff"
    assert c.encode(bytearray(b"ab")) == b"ab"
    assert c.encode(memoryview(b"ab")) == b"ab"
    assert c.encode("é") == "é".encode()
    with pytest.raises(TypeError, match="int"):
        c.encode(5)
    with pytest.raises(TypeError):
        c.encode({"a": 1})


@pytest.mark.parametrize("into", [Any, bytes, object])
def test_bytes_codec_decode_to_bytes(into: Any) -> None:
    out = get("bytes").decode(bytearray(b"\x00\xff"), into)
    assert out == b"\x00\xff"
    assert type(out) is bytes


def test_bytes_codec_decode_to_str() -> None:
    assert get("bytes").decode("é".encode(), str) == "é"
    with pytest.raises(BadRequest, match="UTF-8"):
        get("bytes").decode(b"\xff", str)


@pytest.mark.parametrize("into", [Point, dict, User, wrappers_pb2.StringValue])
def test_bytes_codec_refuses_typed_requests(into: Any) -> None:
    with pytest.raises(BadRequest, match="application/octet-stream"):
        get("bytes").decode(b"{}", into)


# -- proto --------------------------------------------------------------------


def test_proto_codec_round_trip() -> None:
    c = get("proto")
    msg = wrappers_pb2.StringValue(value="hi")
    data = c.encode(msg)
    assert data == msg.SerializeToString()
    assert c.decode(data, wrappers_pb2.StringValue) == msg
    st = struct_pb2.Struct()
    st.update({"a": [1, 2]})
    assert c.decode(c.encode(st), struct_pb2.Struct) == st


def test_proto_codec_decodes_memoryview() -> None:
    msg = wrappers_pb2.StringValue(value="hi")
    c = get("proto")
    assert c.decode(memoryview(msg.SerializeToString()), wrappers_pb2.StringValue) == msg


def test_proto_codec_malformed() -> None:
    with pytest.raises(BadRequest, match="malformed protobuf"):
        get("proto").decode(b"\xff\xff\xff", wrappers_pb2.StringValue)


@pytest.mark.parametrize("into", [Point, Person, dict, User, Any])
def test_proto_codec_refuses_non_protobuf_types(into: Any) -> None:
    with pytest.raises(UnsupportedMediaType, match="protobuf"):
        get("proto").decode(b"", into)


def test_proto_codec_passes_serialized_messages_through_as_bytes() -> None:
    # For handlers that parse (or have already built) the wire bytes themselves.
    data = wrappers_pb2.StringValue(value="hi").SerializeToString()
    assert get("proto").decode(data, bytes) == data
    assert get("proto").encode(data) == data


@pytest.mark.parametrize("value", [{"a": 1}, Point(1, 2), "text"])
def test_proto_codec_encodes_only_messages(value: Any) -> None:
    with pytest.raises(TypeError, match="protobuf"):
        get("proto").encode(value)
