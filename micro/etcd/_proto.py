"""etcd's protobuf messages, encoded and decoded by hand (sans-IO).

Protobuf's wire format is a sequence of fields, each a tag (field number and
wire type, as a varint) and a value: a varint (type 0: ints, bools, enums) or
a length-prefixed run of bytes (type 2: bytes, strings, nested messages). A
repeated field is the same field several times. Fields at their default value
are left out, except the members of a ``oneof`` (marked ``presence``), whose
presence is itself the meaning.

Each message is a table, field number -> :class:`Field`; :func:`encode` turns
a dict of values into bytes and :func:`decode` turns bytes into a dict with
every field present (defaults filled in, ``None`` for an absent message).
int64 fields are two's complement on the wire, so a negative value (a TTL of
-1) takes ten bytes and decodes back to a negative int. Unknown fields, of any
wire type, are skipped, as protobuf requires. The tables hold only what micro
uses of etcd's ``rpc.proto`` and ``kv.proto`` (field numbers as there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

__all__ = ["DecodeError", "Field", "Message", "decode", "encode"]


class DecodeError(ValueError):
    """The bytes are not a valid encoding of the message."""


INT = "int"  # int64 and enums: a varint, negative as two's complement
UINT = "uint"  # uint64: a varint, never negative
BOOL = "bool"
BYTES = "bytes"
STRING = "string"

Message = Mapping[int, "Field"]
Kind = Union[str, Message]  # noqa: UP007 (a forward reference inside a string)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    repeated: bool = False
    #: a oneof member: written even at its default value
    presence: bool = False


_DEFAULTS: dict[str, Any] = {INT: 0, UINT: 0, BOOL: False, BYTES: b"", STRING: ""}
_MASK64 = (1 << 64) - 1


# -- encoding --------------------------------------------------------------------


def _varint(value: int, out: bytearray) -> None:
    value &= _MASK64  # negative int64s as two's complement, ten bytes
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _encode_value(number: int, kind: Kind, value: Any, out: bytearray) -> None:
    if kind in (INT, UINT, BOOL):
        _varint(number << 3, out)
        _varint(int(value), out)
        return
    if kind == BYTES:
        data = bytes(value)
    elif kind == STRING:
        data = str(value).encode("utf-8")
    else:
        data = encode(kind, value)  # type: ignore[arg-type]
    _varint(number << 3 | 2, out)
    _varint(len(data), out)
    out += data


def encode(message: Message, values: Mapping[str, Any]) -> bytes:
    """The wire form of ``values`` (by field name) as ``message``; unknown names are an error."""
    known = {field.name for field in message.values()}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"no such field: {', '.join(sorted(unknown))}")
    out = bytearray()
    for number in sorted(message):
        field = message[number]
        value = values.get(field.name)
        if value is None:
            continue
        if field.repeated:
            for item in value:
                _encode_value(number, field.kind, item, out)
        elif field.presence or isinstance(field.kind, Mapping) or value != _DEFAULTS[field.kind]:
            _encode_value(number, field.kind, value, out)
    return bytes(out)


# -- decoding --------------------------------------------------------------------


def _read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _MASK64, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint longer than ten bytes")


def _skip(data: memoryview, pos: int, wire_type: int) -> int:
    if wire_type == 0:
        return _read_varint(data, pos)[1]
    if wire_type == 1:
        pos += 8
    elif wire_type == 2:
        length, pos = _read_varint(data, pos)
        pos += length
    elif wire_type == 5:
        pos += 4
    else:
        raise DecodeError(f"unsupported wire type {wire_type}")
    if pos > len(data):
        raise DecodeError("truncated field")
    return pos


def _decode_scalar(kind: str, raw: int | memoryview) -> Any:
    if kind == INT:
        assert isinstance(raw, int)
        return raw - (1 << 64) if raw >> 63 else raw
    if kind == UINT:
        return raw
    if kind == BOOL:
        return bool(raw)
    assert isinstance(raw, memoryview)
    if kind == BYTES:
        return raw.tobytes()
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError("a string field is not UTF-8") from exc


def decode(message: Message, data: bytes | memoryview) -> dict[str, Any]:
    """The fields of ``data`` as ``message``, by name, every field present."""
    values: dict[str, Any] = {}
    for known in message.values():
        if known.repeated:
            values[known.name] = []
        elif isinstance(known.kind, Mapping):
            values[known.name] = None
        else:
            values[known.name] = _DEFAULTS[known.kind]
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        tag, pos = _read_varint(view, pos)
        number, wire_type = tag >> 3, tag & 7
        field = message.get(number)
        expected = 0 if field is not None and field.kind in (INT, UINT, BOOL) else 2
        if field is None or wire_type != expected:
            pos = _skip(view, pos, wire_type)
            continue
        raw: int | memoryview
        if wire_type == 0:
            raw, pos = _read_varint(view, pos)
        else:
            length, pos = _read_varint(view, pos)
            if pos + length > len(view):
                raise DecodeError(f"field {field.name} runs past the end of the message")
            raw, pos = view[pos : pos + length], pos + length
        if isinstance(field.kind, Mapping):
            assert isinstance(raw, memoryview)
            value = decode(field.kind, raw)
        else:
            value = _decode_scalar(field.kind, raw)
        if field.repeated:
            values[field.name].append(value)
        else:
            values[field.name] = value
    return values


# -- etcd's messages (mvccpb/kv.proto, etcdserverpb/rpc.proto) ----------------------

KeyValue: Message = {
    1: Field("key", BYTES),
    2: Field("create_revision", INT),
    3: Field("mod_revision", INT),
    4: Field("version", INT),
    5: Field("value", BYTES),
    6: Field("lease", INT),
}
Event: Message = {1: Field("type", INT), 2: Field("kv", KeyValue), 3: Field("prev_kv", KeyValue)}
ResponseHeader: Message = {
    1: Field("cluster_id", UINT),
    2: Field("member_id", UINT),
    3: Field("revision", INT),
    4: Field("raft_term", UINT),
}

RangeRequest: Message = {
    1: Field("key", BYTES),
    2: Field("range_end", BYTES),
    3: Field("limit", INT),
    4: Field("revision", INT),
    8: Field("keys_only", BOOL),
    9: Field("count_only", BOOL),
}
RangeResponse: Message = {
    1: Field("header", ResponseHeader),
    2: Field("kvs", KeyValue, repeated=True),
    3: Field("more", BOOL),
    4: Field("count", INT),
}
PutRequest: Message = {
    1: Field("key", BYTES),
    2: Field("value", BYTES),
    3: Field("lease", INT),
    4: Field("prev_kv", BOOL),
}
PutResponse: Message = {1: Field("header", ResponseHeader), 2: Field("prev_kv", KeyValue)}
DeleteRangeRequest: Message = {
    1: Field("key", BYTES),
    2: Field("range_end", BYTES),
    3: Field("prev_kv", BOOL),
}
DeleteRangeResponse: Message = {
    1: Field("header", ResponseHeader),
    2: Field("deleted", INT),
    3: Field("prev_kvs", KeyValue, repeated=True),
}
RequestOp: Message = {
    1: Field("request_range", RangeRequest),
    2: Field("request_put", PutRequest),
    3: Field("request_delete_range", DeleteRangeRequest),
}
ResponseOp: Message = {
    1: Field("response_range", RangeResponse),
    2: Field("response_put", PutResponse),
    3: Field("response_delete_range", DeleteRangeResponse),
}
Compare: Message = {
    1: Field("result", INT),
    2: Field("target", INT),
    3: Field("key", BYTES),
    4: Field("version", INT, presence=True),
    5: Field("create_revision", INT, presence=True),
    6: Field("mod_revision", INT, presence=True),
    7: Field("value", BYTES, presence=True),
    8: Field("lease", INT, presence=True),
    64: Field("range_end", BYTES),
}
TxnRequest: Message = {
    1: Field("compare", Compare, repeated=True),
    2: Field("success", RequestOp, repeated=True),
    3: Field("failure", RequestOp, repeated=True),
}
TxnResponse: Message = {
    1: Field("header", ResponseHeader),
    2: Field("succeeded", BOOL),
    3: Field("responses", ResponseOp, repeated=True),
}
CompactionRequest: Message = {1: Field("revision", INT), 2: Field("physical", BOOL)}
CompactionResponse: Message = {1: Field("header", ResponseHeader)}

WatchCreateRequest: Message = {
    1: Field("key", BYTES),
    2: Field("range_end", BYTES),
    3: Field("start_revision", INT),
    4: Field("progress_notify", BOOL),
    6: Field("prev_kv", BOOL),
    7: Field("watch_id", INT),
}
WatchCancelRequest: Message = {1: Field("watch_id", INT)}
WatchRequest: Message = {
    1: Field("create_request", WatchCreateRequest),
    2: Field("cancel_request", WatchCancelRequest),
}
WatchResponse: Message = {
    1: Field("header", ResponseHeader),
    2: Field("watch_id", INT),
    3: Field("created", BOOL),
    4: Field("canceled", BOOL),
    5: Field("compact_revision", INT),
    6: Field("cancel_reason", STRING),
    7: Field("fragment", BOOL),
    11: Field("events", Event, repeated=True),
}

LeaseGrantRequest: Message = {1: Field("TTL", INT), 2: Field("ID", INT)}
LeaseGrantResponse: Message = {
    1: Field("header", ResponseHeader),
    2: Field("ID", INT),
    3: Field("TTL", INT),
    4: Field("error", STRING),
}
LeaseRevokeRequest: Message = {1: Field("ID", INT)}
LeaseRevokeResponse: Message = {1: Field("header", ResponseHeader)}
LeaseKeepAliveRequest: Message = {1: Field("ID", INT)}
LeaseKeepAliveResponse: Message = {
    1: Field("header", ResponseHeader),
    2: Field("ID", INT),
    3: Field("TTL", INT),
}
LeaseTimeToLiveRequest: Message = {1: Field("ID", INT), 2: Field("keys", BOOL)}
LeaseTimeToLiveResponse: Message = {
    1: Field("header", ResponseHeader),
    2: Field("ID", INT),
    3: Field("TTL", INT),
    4: Field("grantedTTL", INT),
    5: Field("keys", BYTES, repeated=True),
}

AuthenticateRequest: Message = {1: Field("name", STRING), 2: Field("password", STRING)}
AuthenticateResponse: Message = {1: Field("header", ResponseHeader), 2: Field("token", STRING)}
