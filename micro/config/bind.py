"""Binding a config section to a type: a dataclass, TypedDict, pydantic model, ...

The codecs' typed decoding does the work (msgspec for dataclasses and typed
dicts, the model's own validation for pydantic), with one difference from
decoding a request: coercion is lax, because environment variables and flags
give every value as a string, so ``"8080"`` binds to an ``int`` field and
``"true"`` to a ``bool``. Errors are :class:`~micro.config.InvalidValue` naming
the bad field by its full key (``database.port``), not its place in a request.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from ..codec import _typed
from ..errors import BadRequest
from .base import InvalidValue

__all__ = ["bind"]

T = TypeVar("T")

_encode = msgspec.json.Encoder(enc_hook=_typed.enc_hook).encode
_decoders: dict[Any, Callable[[_typed.Buffer], Any]] = {}
_MSGSPEC_PATH = re.compile(r"`\$((?:\.[^`\[]+|\[\d+\])*)`")
_PYDANTIC_PATH = re.compile(r" - at `([^`]*)`")


def _lax(into: Any) -> Callable[[_typed.Buffer], Any]:
    return msgspec.json.Decoder(into, strict=False).decode


def _decoder(into: Any) -> Callable[[_typed.Buffer], Any]:
    try:
        return _decoders[into]
    except (KeyError, TypeError):
        fn = _typed.decoder_for(into, _lax)
        try:
            _decoders[into] = fn
        except TypeError:  # an unhashable annotation: decode without caching
            pass
        return fn


def bind(value: Any, into: type[T], key: str = "") -> T:
    """``value`` (a config section) as an instance of ``into``; raises InvalidValue.

    ``key`` is the section's key, used to name bad fields in errors.
    """
    try:
        data = _encode(value)
        result: T = _decoder(into)(data)
        return result
    except msgspec.ValidationError as exc:
        detail = _msgspec_paths(str(exc), key)
    except BadRequest as exc:  # pydantic and protobuf report through the codec's errors
        detail = _PYDANTIC_PATH.sub(lambda m: f" - at `{_join(key, m.group(1))}`", exc.detail)
    except TypeError as exc:  # a value msgspec cannot encode (a YAML set, say)
        detail = str(exc)
    name = getattr(into, "__name__", repr(into))
    raise InvalidValue(f"config {key or '(root)'} does not fit {name}: {detail}")


def _msgspec_paths(message: str, key: str) -> str:
    """msgspec's ```$.port``` paths as full keys: ```database.port``."""
    if _MSGSPEC_PATH.search(message):
        return _MSGSPEC_PATH.sub(lambda m: f"`{_join(key, m.group(1))}`", message)
    return f"{message} - at `{key}`" if key else message


def _join(key: str, path: str) -> str:
    path = path.lstrip(".")
    if not path or path == "$":
        return key or "(root)"
    if not key:
        return path
    return f"{key}{path}" if path.startswith("[") else f"{key}.{path}"
