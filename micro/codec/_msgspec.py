"""The shared shape of the msgspec-backed codecs (JSON and msgpack)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._typed import decoder_for, enc_hook, wrap_errors

__all__ = ["MsgspecCodec"]

Buffer = bytes | memoryview


class MsgspecCodec:
    """A codec built from one msgspec module (``msgspec.json`` or ``msgspec.msgpack``).

    Decoders are built once per target type and cached, so a hot endpoint
    pays for type inspection only on its first call.
    """

    name: str
    content_type: str
    #: the format's name in error messages ("malformed JSON: ...")
    label: str
    module: Any

    def __init__(self) -> None:
        self._encoder = self.module.Encoder(enc_hook=enc_hook)
        self._decoders: dict[Any, Callable[[Buffer], Any]] = {}

    def encode(self, value: Any) -> bytes:
        data: bytes = self._encoder.encode(value)
        return data

    def decode(self, data: bytes | memoryview, into: Any = Any) -> Any:
        try:
            fn = self._decoders[into]
        except (KeyError, TypeError):
            fn = self._decoder(into)
        return fn(data)

    def _decoder(self, into: Any) -> Callable[[Buffer], Any]:
        module = self.module
        fn = wrap_errors(decoder_for(into, lambda t: module.Decoder(t).decode), self.label)
        try:
            self._decoders[into] = fn
        except TypeError:  # unhashable annotation: decode without caching
            pass
        return fn
