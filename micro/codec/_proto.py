"""Protocol Buffers codec (``application/protobuf``, ``application/grpc``).

Needs the ``protobuf`` package (extra ``micro-runtime[proto]``) and handler
types that are generated message classes.
"""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest, UnsupportedMediaType
from ._typed import is_protobuf


class ProtoCodec:
    name = "proto"
    content_type = "application/protobuf"

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)  # an already serialized message
        try:
            serialize = value.SerializeToString
        except AttributeError:
            raise TypeError(
                f"the protobuf codec encodes protobuf messages, not {type(value).__name__}"
            ) from None
        data: bytes = serialize()
        return data

    def decode(self, data: bytes | memoryview, into: Any = Any) -> Any:
        if into is bytes:
            return bytes(data)  # the handler parses the message itself
        if not is_protobuf(into):
            raise UnsupportedMediaType(
                "protobuf bodies need an endpoint whose types are protobuf messages; "
                "use application/json or application/msgpack"
            )
        try:
            return into.FromString(data)
        except Exception as exc:  # google.protobuf.message.DecodeError and friends
            raise BadRequest(f"malformed protobuf: {exc}") from None
