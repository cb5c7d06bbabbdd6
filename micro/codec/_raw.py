"""Raw bytes codec (``application/octet-stream``): the body is the value."""

from __future__ import annotations

from typing import Any

from ..errors import BadRequest


class BytesCodec:
    name = "bytes"
    content_type = "application/octet-stream"

    def encode(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        if isinstance(value, str):
            return value.encode()
        raise TypeError(f"the bytes codec encodes bytes, not {type(value).__name__}")

    def decode(self, data: bytes | memoryview, into: Any = Any) -> Any:
        if into in (Any, bytes, object):
            return bytes(data)
        if into is str:
            try:
                return bytes(data).decode()
            except UnicodeDecodeError as exc:
                raise BadRequest(f"body is not UTF-8: {exc}") from None
        raise BadRequest(
            "application/octet-stream bodies decode to bytes, "
            f"not {getattr(into, '__name__', into)}"
        )
