"""The Codec protocol and the lookup of codecs by content type.

A codec turns a typed value into bytes and back. ``decode`` takes the type to
produce (a dataclass, ``TypedDict``, pydantic model, protobuf message, ``dict``,
``bytes``, ...) and raises :class:`~micro.errors.BadRequest` naming the bad
field when the bytes do not fit it.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol, runtime_checkable

from ..errors import UnsupportedMediaType

__all__ = ["Codec", "register", "get", "for_content_type", "parse_content_type", "content_types"]


@runtime_checkable
class Codec(Protocol):
    """Encodes values to bytes and decodes bytes into a requested type."""

    #: short name, also the gRPC content subtype (``application/grpc+<name>``)
    name: str
    #: the content type for plain HTTP calls
    content_type: str

    def encode(self, value: Any) -> bytes:
        """Encode ``value``; raises ``TypeError`` for values the codec cannot encode."""
        ...

    def decode(self, data: bytes | memoryview, into: Any = Any) -> Any:
        """Decode ``data`` as ``into``; raises :class:`~micro.errors.BadRequest`."""
        ...


_by_name: dict[str, Codec] = {}
_by_content_type: dict[str, Codec] = {}


def register(codec: Codec, *aliases: str) -> None:
    """Make ``codec`` available by name, by its content type and by ``aliases``."""
    _by_name[codec.name] = codec
    _parsed.clear()
    for ct in (codec.content_type, *aliases):
        _by_content_type[ct] = codec


def get(name: str) -> Codec:
    """The codec called ``name`` (``json``, ``msgpack``, ``proto``, ``bytes``)."""
    _load_builtins()
    try:
        return _by_name[name]
    except KeyError:
        raise UnsupportedMediaType(f"no codec named {name!r}") from None


def parse_content_type(content_type: str) -> tuple[bool, Codec]:
    """Split a content type into (is gRPC, codec).

    ``application/grpc`` and ``application/grpc+proto`` mean protobuf; other
    ``application/grpc+<name>`` subtypes name the codec; anything else is a
    plain HTTP body type such as ``application/json``.
    """
    known = _parsed.get(content_type)
    if known is not None:
        return known
    result = _parse_content_type(content_type)
    if len(_parsed) < 256:
        _parsed[content_type] = result
    return result


#: Content types parsed lately (every call names one; a few are ever used).
_parsed: dict[str, tuple[bool, Codec]] = {}


def _parse_content_type(content_type: str) -> tuple[bool, Codec]:
    _load_builtins()
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct.startswith("application/grpc"):
        sub = ct[len("application/grpc") :]
        if sub in ("", "+proto"):
            return True, get("proto")
        if sub.startswith("+") and sub[1:] in _by_name:
            return True, _by_name[sub[1:]]
        raise UnsupportedMediaType(f"unsupported gRPC content type {content_type!r}")
    codec = _by_content_type.get(ct)
    if codec is None:
        raise UnsupportedMediaType(
            f"unsupported content type {content_type!r}; use one of {', '.join(content_types())}"
        )
    return False, codec


def for_content_type(content_type: str) -> Codec:
    """The codec for a content type (plain or gRPC)."""
    return parse_content_type(content_type)[1]


def content_types() -> list[str]:
    _load_builtins()
    return sorted({c.content_type for c in _by_name.values()})


_loaded = False
_loading = threading.Lock()


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    with _loading:  # services may start on several threads at once
        if _loaded:
            return
        from . import _json, _msgpack, _proto, _raw

        register(_json.JsonCodec(), "text/json", "application/json-rpc")
        register(_msgpack.MsgpackCodec(), "application/x-msgpack", "application/vnd.msgpack")
        register(_proto.ProtoCodec(), "application/x-protobuf", "application/proto")
        register(_raw.BytesCodec())
        _loaded = True
