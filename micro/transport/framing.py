"""gRPC length-prefixed message framing (sans-IO).

Each message is ``compressed-flag (1 byte) | length (4 bytes, big endian) |
payload``. :class:`MessageDecoder` takes bytes in any chunking and returns
whole messages; it checks a message's declared length against the limit as
soon as the 5-byte prefix is in, so an oversized message is refused without
buffering it.

Compression: micro sends uncompressed messages, and accepts messages
compressed with the stream's ``grpc-encoding`` when that is ``gzip``,
``deflate`` or ``identity`` (what it advertises in ``grpc-accept-encoding``).
A compressed message is inflated no further than the size limit, so a small
"zip bomb" cannot make a large one.
"""

from __future__ import annotations

import struct
import zlib

from ..errors import NotImplementedByServer, PayloadTooLarge, UnsupportedMediaType

#: a received message: bytes or a zero-copy view of them
Payload = bytes | memoryview

__all__ = [
    "encode_message",
    "message_parts",
    "detach",
    "MessageDecoder",
    "PREFIX_SIZE",
    "ACCEPT_ENCODING",
]

#: the message encodings micro can read, as advertised in ``grpc-accept-encoding``
ACCEPT_ENCODING = "identity,gzip,deflate"
_WBITS = {"gzip": 31, "deflate": 15}

PREFIX_SIZE = 5
_PREFIX = struct.Struct(">BI")


#: Above this size a message goes out as prefix and payload separately rather
#: than copied behind its prefix (a copy of a large payload costs more than
#: the extra DATA frame header).
SPLIT_ABOVE = 64 * 1024

#: Received data at least this large may stay a view of the bytes it arrived
#: in; smaller pieces are copied out. A view keeps the whole read it came from
#: alive (up to 256 KiB), so a peer could otherwise make many tiny messages or
#: body pieces pin far more memory than flow control lets it send.
VIEW_MIN = 64 * 1024


def detach(data: Payload) -> Payload:
    """``data`` itself if it is large or not a view; otherwise a copy that pins nothing."""
    if type(data) is memoryview and len(data) < VIEW_MIN:
        return data.tobytes()
    return data


def encode_message(payload: bytes) -> bytes:
    """Frame one uncompressed message."""
    return _PREFIX.pack(0, len(payload)) + payload


def message_parts(payload: bytes) -> tuple[bytes, ...]:
    """One uncompressed message as the byte strings to send, in order."""
    if len(payload) > SPLIT_ABOVE:
        return _PREFIX.pack(0, len(payload)), payload
    return (_PREFIX.pack(0, len(payload)) + payload,)


class MessageDecoder:
    """Reassembles framed messages from a byte stream.

    Raises :class:`~micro.errors.PayloadTooLarge` when a declared length is
    over ``max_size`` and :class:`~micro.errors.UnsupportedMediaType` for a
    compressed message (micro never advertises a ``grpc-accept-encoding``, so
    a peer that compresses anyway is in error).
    """

    __slots__ = ("_buffer", "_compressed", "_encoding", "_max_size", "_need")

    def __init__(self, max_size: int, encoding: str = "identity") -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self._need = 0  # length of the message being assembled, 0 while reading a prefix
        self._compressed = False
        self._encoding = encoding.strip().lower() or "identity"

    @property
    def pending(self) -> int:
        """Bytes held that are not yet a whole message."""
        return len(self._buffer)

    def feed(self, data: Payload) -> list[Payload]:
        """Whole messages completed by ``data``.

        Messages are memoryviews where that saves copying a large payload
        (codecs read them as they are; ``bytes(m)`` makes a copy of one).
        """
        buf = self._buffer
        # Fast path: one whole message arriving in one piece, nothing buffered.
        if not buf and len(data) >= PREFIX_SIZE:
            flag, length = _PREFIX.unpack_from(data)
            if len(data) == PREFIX_SIZE + length:
                self._check(flag, length)
                payload = memoryview(data)[PREFIX_SIZE:]
                return [self._inflate(payload) if flag else detach(payload)]
        buf += data
        out: list[Payload] = []
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
                self._compressed = bool(flag)
            end = PREFIX_SIZE + self._need
            if len(buf) < end:
                return out
            # The message keeps the buffer it was assembled in; the buffer goes
            # on with a copy of what follows it (usually little or nothing).
            payload = memoryview(buf)[PREFIX_SIZE:end]
            out.append(self._inflate(payload) if self._compressed else payload)
            buf = self._buffer = bytearray(buf[end:])
            self._need = 0

    def _check(self, flag: int, length: int) -> None:
        if flag not in (0, 1):
            raise UnsupportedMediaType(f"invalid gRPC message flag {flag}")
        if flag == 1 and self._encoding not in _WBITS:
            raise NotImplementedByServer(
                f"compressed message with grpc-encoding {self._encoding!r}; "
                f"supported: {ACCEPT_ENCODING}",
                grpc_status=12,
            )
        if length > self._max_size:
            raise PayloadTooLarge(
                f"message of {length} bytes is over the limit of {self._max_size} bytes"
            )

    def _inflate(self, payload: Payload) -> bytes:
        inflater = zlib.decompressobj(_WBITS[self._encoding])
        try:
            data = inflater.decompress(payload, self._max_size + 1)
        except zlib.error as exc:
            raise UnsupportedMediaType(f"corrupt {self._encoding} message: {exc}") from None
        if len(data) > self._max_size:
            raise PayloadTooLarge(f"message inflates to over the limit of {self._max_size} bytes")
        return data
