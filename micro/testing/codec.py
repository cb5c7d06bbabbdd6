"""Checks every Codec passes, micro's and users' alike: ``check_codec(codec)``.

A codec plugged in by entry point (group ``micro.codec``) or registered with
:func:`micro.codec.register` must round-trip the values services exchange,
name itself and its content type, reject bytes it cannot read with
BadRequest, and reject values it cannot write with TypeError, so a bad
request is an answer, never a crash.
"""

from __future__ import annotations

from typing import Any

from ..codec.base import Codec
from ..errors import BadRequest

__all__ = ["CODEC_SAMPLES", "check_codec"]

#: values every structured codec round-trips as ``dict``/``Any``
CODEC_SAMPLES: list[Any] = [
    {"name": "alice", "age": 30, "score": 1.5, "admin": False, "tags": ["a", "b"]},
    {"nested": {"deep": {"list": [1, 2, {"x": None}]}}},
    {"unicode": "héllo wörld ✓ 日本語", "empty": "", "zero": 0, "negative": -7},
    {"big": 2**53, "small": -(2**31)},
    {},
]

#: a value no codec can encode
_UNENCODABLE = object()


def check_codec(
    codec: Codec,
    samples: list[Any] | None = None,
    *,
    into: Any = dict,
    garbage: bytes | None = b"\xff\x00not a valid message\x01",
    unencodable: Any = _UNENCODABLE,
) -> None:
    """Check ``codec``; raises AssertionError naming what it got wrong.

    ``samples`` are values that must come back equal after ``encode`` then
    ``decode(..., into)`` (:data:`CODEC_SAMPLES` as ``dict`` by default; a
    bytes codec passes ``[b"..."]`` and ``into=bytes``). ``garbage`` must be
    refused with BadRequest, ``unencodable`` with TypeError (``None`` skips
    either check, for a codec that accepts anything).
    """
    assert isinstance(codec.name, str) and codec.name, f"{codec!r} needs a name"
    assert codec.name == codec.name.lower() and "/" not in codec.name, (
        f"the name {codec.name!r} is also the gRPC content subtype: lower case, no '/'"
    )
    assert "/" in codec.content_type, f"{codec.content_type!r} is not a content type"
    for value in CODEC_SAMPLES if samples is None else samples:
        data = codec.encode(value)
        assert isinstance(data, bytes), f"encode({value!r}) gave {type(data).__name__}"
        back = codec.decode(data, into)
        assert back == value, f"{value!r} came back as {back!r}"
        again = codec.decode(memoryview(data), into)
        assert again == value, f"{value!r} decoded from a memoryview as {again!r}"
    if garbage is not None:
        try:
            codec.decode(garbage, into)
        except BadRequest:
            pass
        else:
            raise AssertionError(f"decoding {garbage!r} did not raise BadRequest")
    if unencodable is not None:
        try:
            codec.encode(unencodable)
        except TypeError:
            pass
        else:
            raise AssertionError(f"encoding {unencodable!r} did not raise TypeError")
