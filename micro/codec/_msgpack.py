"""MessagePack codec (``application/msgpack``, ``application/grpc+msgpack``), on msgspec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ._typed import decoder_for, enc_hook, wrap_errors


class MsgpackCodec:
    name = "msgpack"
    content_type = "application/msgpack"

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
        self._decoders: dict[Any, Callable[[bytes], Any]] = {}

    def encode(self, value: Any) -> bytes:
        return self._encoder.encode(value)

    def decode(self, data: bytes, into: Any = Any) -> Any:
        try:
            fn = self._decoders[into]
        except (KeyError, TypeError):
            fn = self._decoder(into)
        return fn(data)

    def _decoder(self, into: Any) -> Callable[[bytes], Any]:
        fn = wrap_errors(decoder_for(into, lambda t: msgspec.msgpack.Decoder(t).decode), "msgpack")
        try:
            self._decoders[into] = fn
        except TypeError:
            pass
        return fn
