"""Checks and encodings every store backend shares.

Every write is checked in full before a backend is touched, so a bad write
changes nothing. Keys become bytes as UTF-8 with ``surrogatepass``: every
code point round-trips (lone surrogates included), and byte order is code
point order, which is the order ``list`` promises. No key contains the byte
0xFF, so ``prefix + b"\\xff"`` bounds a prefix range from above.

Backends that keep one blob per record (etcd, Redis) pack the value with its
metadata and expiry: ``1 | expiry (f64, 0 = never) | len(metadata) (u32) |
metadata JSON | value``.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

import msgspec

from ..errors import BadRequest
from .base import InvalidKey, Record, StoreOptions, StoreUnavailable, ValueTooLarge

__all__ = [
    "Prepared",
    "prepare_write",
    "encode_key",
    "encode_affix",
    "decode_key",
    "namespace",
    "check_page",
    "check_scan",
    "page",
    "decode_metadata",
    "pack",
    "unpack",
    "unpack_record",
    "not_open",
    "is_live",
    "PREFIX_END",
]

T = TypeVar("T")

#: appended to a prefix, the exclusive upper bound of its range (no key holds 0xFF)
PREFIX_END = b"\xff"
#: bytes of a database or table name, UTF-8 encoded
MAX_NAME_SIZE = 256

_HEADER = struct.Struct(">BdI")
_FORMAT = 1
_json_encoder = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked write: namespace, key, value and metadata as bytes, expiry resolved."""

    database: str
    table: str
    key: bytes
    value: bytes
    metadata: bytes
    expiry: float | None


def not_open(kind: str) -> StoreUnavailable:
    return StoreUnavailable(f"the {kind} store is not open: use it inside `async with store:`")


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def decode_key(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def encode_key(key: object, options: StoreOptions, kind: str) -> bytes:
    """The key as bytes; raises InvalidKey when empty, not a str, or too long."""
    if not isinstance(key, str):
        raise InvalidKey(f"a key must be a str, not {type(key).__name__}")
    if not key:
        raise InvalidKey("the key is empty")
    data = _utf8(key)
    if len(data) > options.max_key_size:
        raise InvalidKey(
            f"the key is {len(data)} bytes; the {kind} store takes at most "
            f"{options.max_key_size} (StoreOptions.max_key_size)"
        )
    return data


def encode_affix(text: object, what: str) -> bytes:
    """A prefix or suffix as bytes; it may be empty (matching every key)."""
    if not isinstance(text, str):
        raise InvalidKey(f"a {what} must be a str, not {type(text).__name__}")
    return _utf8(text)


def namespace(options: StoreOptions, database: str | None, table: str | None) -> tuple[str, str]:
    """The (database, table) a call works in; raises BadRequest for a bad name."""
    database = options.database if database is None else database
    table = options.table if table is None else table
    for what, name in (("database", database), ("table", table)):
        if not isinstance(name, str) or not name:
            raise BadRequest(f"the {what} name must be a non-empty str, not {name!r}")
        if len(_utf8(name)) > MAX_NAME_SIZE:
            raise BadRequest(f"the {what} name is over {MAX_NAME_SIZE} bytes")
    return database, table


def check_page(limit: int | None, offset: int) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise BadRequest(f"limit must be None or an int >= 0, not {limit!r}")
    if not isinstance(offset, int) or offset < 0:
        raise BadRequest(f"offset must be an int >= 0, not {offset!r}")


def check_scan(
    prefix: object, suffix: object, limit: int | None, offset: int
) -> tuple[bytes, bytes]:
    """The prefix and suffix of a scan (a prefix or suffix read, a list) as bytes,
    its ``limit`` and ``offset`` checked; raises InvalidKey or BadRequest."""
    start, end = encode_affix(prefix, "prefix"), encode_affix(suffix, "suffix")
    check_page(limit, offset)
    return start, end


def page(items: Iterable[T], limit: int | None, offset: int) -> list[T]:
    stop = None if limit is None else offset + limit
    return list(islice(items, offset, stop))


def prepare_write(
    record: Record,
    options: StoreOptions,
    kind: str,
    *,
    ttl: float | None,
    expiry: float | None,
    database: str | None,
    table: str | None,
) -> Prepared:
    """Check everything about a write; raises InvalidKey, ValueTooLarge, BadRequest."""
    if not isinstance(record, Record):
        raise BadRequest(f"write takes a Record, not {type(record).__name__}")
    database, table = namespace(options, database, table)
    key = encode_key(record.key, options, kind)
    value = record.value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise BadRequest(f"a record's value must be bytes, not {type(value).__name__}")
    value = bytes(value)
    if len(value) > options.max_value_size:
        raise ValueTooLarge(
            f"the value is {len(value)} bytes; the {kind} store takes at most "
            f"{options.max_value_size} (StoreOptions.max_value_size)"
        )
    metadata = _encode_metadata(record.metadata, options)
    return Prepared(database, table, key, value, metadata, _expiry(record, ttl, expiry))


def _encode_metadata(metadata: object, options: StoreOptions) -> bytes:
    if not isinstance(metadata, dict):
        raise BadRequest(f"metadata must be a dict, not {type(metadata).__name__}")
    if not metadata:
        return b""
    if not all(isinstance(name, str) for name in metadata):
        raise BadRequest("metadata keys must be str")
    try:
        data = _json_encoder.encode(metadata)
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise BadRequest(f"metadata must be JSON-encodable: {exc}") from None
    if len(data) > options.max_metadata_size:
        raise ValueTooLarge(
            f"the metadata is {len(data)} bytes as JSON; at most {options.max_metadata_size} "
            "(StoreOptions.max_metadata_size)"
        )
    return data


def decode_metadata(data: bytes) -> dict[str, Any]:
    return _json_decoder.decode(data) if data else {}


def _expiry(record: Record, ttl: float | None, expiry: float | None) -> float | None:
    if ttl is not None and expiry is not None:
        raise BadRequest("give ttl or expiry, not both")
    if ttl is not None:
        if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
            raise BadRequest(f"ttl must be a positive number of seconds, not {ttl!r}")
        return time.time() + ttl
    if expiry is None:
        expiry = record.expiry
    if expiry is None:
        return None
    if not isinstance(expiry, int | float) or not math.isfinite(expiry):
        raise BadRequest(f"expiry must be a timestamp, not {expiry!r}")
    if expiry <= time.time():
        raise BadRequest("expiry is in the past")
    return float(expiry)


def is_live(expiry: float | None, now: float) -> bool:
    return expiry is None or expiry > now


def pack(value: bytes, metadata: bytes, expiry: float | None) -> bytes:
    return _HEADER.pack(_FORMAT, expiry or 0.0, len(metadata)) + metadata + value


def unpack(data: bytes) -> tuple[bytes, bytes, float | None]:
    """(value, metadata JSON, expiry) from :func:`pack`'s bytes."""
    if len(data) < _HEADER.size or data[0] != _FORMAT:
        raise ValueError("not a packed store record")
    _, expiry, size = _HEADER.unpack_from(data)
    start = _HEADER.size
    return data[start + size :], data[start : start + size], expiry or None


def unpack_record(key: bytes, data: bytes) -> Record | None:
    """The record of ``key`` packed in ``data`` by :func:`pack`; None when it has
    expired or ``data`` is not a packed record (someone else's value)."""
    try:
        value, metadata, expiry = unpack(data)
    except ValueError:
        return None
    if not is_live(expiry, time.time()):
        return None
    return Record(decode_key(key), value, decode_metadata(metadata), expiry)
