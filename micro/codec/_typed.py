"""Typed decoding shared by the JSON and msgpack codecs.

msgspec decodes straight into dataclasses, ``TypedDict``, ``dict``, ``list`` and
scalars, validating as it goes and naming the path of a bad field
(``Expected `str`, got `int` - at `$.name```). Pydantic models and protobuf
messages are decoded to plain data first and then validated by their own
library, so they report their own field errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from ..errors import BadRequest

__all__ = ["enc_hook", "decoder_for", "is_pydantic", "is_protobuf"]

Buffer = bytes | memoryview


def is_pydantic(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "model_validate") and hasattr(tp, "model_fields")


def is_protobuf(tp: Any) -> bool:
    return isinstance(tp, type) and hasattr(tp, "FromString") and hasattr(tp, "DESCRIPTOR")


def enc_hook(value: Any) -> Any:
    """Turn values msgspec does not know natively into plain data."""
    if hasattr(value, "model_dump"):  # pydantic
        return value.model_dump(mode="json")
    if hasattr(value, "DESCRIPTOR") and hasattr(value, "SerializeToString"):  # protobuf
        from google.protobuf import json_format

        return json_format.MessageToDict(value, preserving_proto_field_name=True)
    raise TypeError(f"cannot encode a value of type {type(value).__name__}")


def decoder_for(
    into: Any, make: Callable[[Any], Callable[[Buffer], Any]]
) -> Callable[[Buffer], Any]:
    """A function decoding bytes into ``into``, built from a codec's raw decoder factory."""
    if is_pydantic(into):
        raw = make(Any)

        def decode_pydantic(data: Buffer) -> Any:
            from pydantic import ValidationError

            try:
                return into.model_validate(raw(data))
            except ValidationError as exc:
                raise BadRequest(_pydantic_detail(exc)) from None

        return decode_pydantic
    if is_protobuf(into):
        raw = make(Any)

        def decode_protobuf(data: Buffer) -> Any:
            from google.protobuf import json_format

            plain = raw(data)  # malformed input is reported by the codec itself
            try:
                return json_format.ParseDict(plain, into())
            except (json_format.ParseError, TypeError, ValueError) as exc:
                raise BadRequest(f"invalid request: {exc}") from None

        return decode_protobuf
    return make(into)


def _pydantic_detail(exc: Any) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "$"
        parts.append(f"{err.get('msg', 'invalid')} - at `{loc}`")
    return "; ".join(parts) or str(exc)


def wrap_errors(fn: Callable[[Buffer], Any], what: str) -> Callable[[Buffer], Any]:
    """Map msgspec's errors to BadRequest with the decoder's message."""

    def decode(data: Buffer) -> Any:
        try:
            return fn(data)
        except msgspec.ValidationError as exc:
            raise BadRequest(f"invalid request: {exc}") from None
        except msgspec.DecodeError as exc:
            raise BadRequest(f"malformed {what}: {exc}") from None

    return decode
