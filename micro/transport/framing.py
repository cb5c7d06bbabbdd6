"""gRPC length-prefixed message framing (sans-IO).

Each message is ``compressed-flag (1 byte) | length (4 bytes, big endian) |
payload``. :class:`MessageDecoder` takes bytes in any chunking and returns
whole messages; it checks a message's declared length against the limit as
soon as the 5-byte prefix is in, so an oversized message is refused without
buffering it.
"""

from __future__ import annotations

import struct

from ..errors import PayloadTooLarge, UnsupportedMediaType

__all__ = ["encode_message", "MessageDecoder", "PREFIX_SIZE"]

PREFIX_SIZE = 5
_PREFIX = struct.Struct(">BI")


def encode_message(payload: bytes) -> bytes:
    """Frame one uncompressed message."""
    return _PREFIX.pack(0, len(payload)) + payload


class MessageDecoder:
    """Reassembles framed messages from a byte stream.

    Raises :class:`~micro.errors.PayloadTooLarge` when a declared length is
    over ``max_size`` and :class:`~micro.errors.UnsupportedMediaType` for a
    compressed message (micro never advertises a ``grpc-accept-encoding``, so
    a peer that compresses anyway is in error).
    """

    __slots__ = ("_buffer", "_max_size", "_need")

    def __init__(self, max_size: int) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self._need = 0  # length of the message being assembled, 0 while reading a prefix

    @property
    def pending(self) -> int:
        """Bytes held that are not yet a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buffer
        # Fast path: one whole message arriving in one piece, nothing buffered.
        if not buf and len(data) >= PREFIX_SIZE:
            flag, length = _PREFIX.unpack_from(data)
            if len(data) == PREFIX_SIZE + length:
                self._check(flag, length)
                return [data[PREFIX_SIZE:]]
        buf += data
        out: list[bytes] = []
        while True:
            if not self._need:
                if len(buf) < PREFIX_SIZE:
                    return out
                flag, length = _PREFIX.unpack_from(buf)
                self._check(flag, length)
                if length == 0:
                    del buf[:PREFIX_SIZE]
                    out.append(b"")
                    continue
                self._need = length
            end = PREFIX_SIZE + self._need
            if len(buf) < end:
                return out
            out.append(bytes(buf[PREFIX_SIZE:end]))
            del buf[:end]
            self._need = 0

    def _check(self, flag: int, length: int) -> None:
        if flag not in (0, 1):
            raise UnsupportedMediaType(f"invalid gRPC message flag {flag}")
        if flag == 1:
            raise UnsupportedMediaType("compressed gRPC messages are not supported")
        if length > self._max_size:
            raise PayloadTooLarge(
                f"message of {length} bytes is over the limit of {self._max_size} bytes"
            )
