"""Checks and encodings every store backend shares (micro/store/_records.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from micro.errors import BadRequest
from micro.store import InvalidKey, Record, StoreOptions, ValueTooLarge
from micro.store._records import (
    PREFIX_END,
    Prepared,
    check_page,
    check_scan,
    decode_key,
    decode_metadata,
    encode_key,
    namespace,
    pack,
    page,
    prepare_write,
    unpack,
    unpack_record,
)

OPTIONS = StoreOptions(max_key_size=8, max_value_size=16, max_metadata_size=32)


def _prepare(record: Record, *, ttl: Any = None, expiry: Any = None) -> Prepared:
    return prepare_write(record, OPTIONS, "test", ttl=ttl, expiry=expiry, database=None, table=None)


@pytest.mark.parametrize("key", ["a", "\x00", "\ud800", "\U0010ffff", "ü/%:"])
def test_every_code_point_round_trips(key: str) -> None:
    assert decode_key(encode_key(key, StoreOptions(), "test")) == key


def test_byte_order_is_code_point_order() -> None:
    keys = ["\x00", "a", "\x7f", "\u00ff", "\u0100", "\ud7ff", "\ud800", "\udfff", "\ue000"]
    keys.append("\U0010ffff")
    encoded = [encode_key(k, StoreOptions(), "test") for k in keys]
    assert sorted(encoded) == encoded == sorted(encoded, key=lambda b: b)
    assert all(PREFIX_END not in e for e in encoded)


def test_key_limits_count_bytes_and_name_the_store() -> None:
    assert encode_key("k" * 8, OPTIONS, "test") == b"k" * 8
    with pytest.raises(InvalidKey, match="9 bytes; the test store takes at most 8"):
        encode_key("k" * 9, OPTIONS, "test")
    with pytest.raises(InvalidKey, match="10 bytes"):
        encode_key("é" * 5, OPTIONS, "test")
    with pytest.raises(InvalidKey, match="empty"):
        encode_key("", OPTIONS, "test")
    with pytest.raises(InvalidKey, match="not bytes"):
        encode_key(b"k", OPTIONS, "test")


def test_value_and_metadata_limits() -> None:
    _prepare(Record("k", b"x" * 16))
    with pytest.raises(ValueTooLarge, match="17 bytes"):
        _prepare(Record("k", b"x" * 17))
    with pytest.raises(ValueTooLarge, match="metadata"):
        _prepare(Record("k", b"v", {"m": "x" * 40}))
    with pytest.raises(BadRequest, match="JSON"):
        _prepare(Record("k", b"v", {"m": object()}))
    with pytest.raises(BadRequest, match="keys must be str"):
        _prepare(Record("k", b"v", {1: "x"}))  # type: ignore[dict-item]
    with pytest.raises(BadRequest, match="bytes"):
        _prepare(Record("k", "v"))  # type: ignore[arg-type]
    assert _prepare(Record("k", bytearray(b"v"))).value == b"v"  # type: ignore[arg-type]


def test_expiry_from_ttl_expiry_or_the_record() -> None:
    now = time.time()
    assert _prepare(Record("k", b"v")).expiry is None
    ttl = _prepare(Record("k", b"v"), ttl=10).expiry
    assert ttl is not None and now + 9 < ttl <= time.time() + 10
    assert _prepare(Record("k", b"v"), expiry=now + 5).expiry == now + 5
    assert _prepare(Record("k", b"v", expiry=now + 7)).expiry == now + 7
    overridden = _prepare(Record("k", b"v", expiry=now + 7), ttl=1).expiry
    assert overridden is not None and overridden < now + 2
    bad_ttls: list[Any] = [0, -1, float("inf"), float("nan"), "1"]
    for ttl in bad_ttls:
        with pytest.raises(BadRequest):
            _prepare(Record("k", b"v"), ttl=ttl)
    bad_expiries: list[Any] = [now - 1, float("nan"), "soon"]
    for expiry in bad_expiries:
        with pytest.raises(BadRequest):
            _prepare(Record("k", b"v"), expiry=expiry)
    with pytest.raises(BadRequest, match="not both"):
        _prepare(Record("k", b"v"), ttl=1, expiry=now + 1)


def test_namespaces_default_to_the_options() -> None:
    assert namespace(StoreOptions(database="d", table="t"), None, None) == ("d", "t")
    assert namespace(OPTIONS, "x", "y") == ("x", "y")
    for bad in ("", "x" * 300, 5):
        with pytest.raises(BadRequest):
            namespace(OPTIONS, bad, None)  # type: ignore[arg-type]


def test_pages() -> None:
    assert page(range(10), 3, 2) == [2, 3, 4]
    assert page(range(10), None, 8) == [8, 9]
    assert page(range(10), 0, 0) == []
    for limit, offset in ((-1, 0), (None, -1), (1.5, 0)):
        with pytest.raises(BadRequest):
            check_page(limit, offset)  # type: ignore[arg-type]


@pytest.mark.parametrize("expiry", [None, 1_900_000_000.123456])
def test_pack_round_trips(expiry: float | None) -> None:
    meta = b'{"a":1}'
    assert unpack(pack(b"\x00value", meta, expiry)) == (b"\x00value", meta, expiry)
    assert unpack(pack(b"", b"", None)) == (b"", b"", None)
    assert decode_metadata(meta) == {"a": 1} and decode_metadata(b"") == {}
    with pytest.raises(ValueError):
        unpack(b"\x02" + pack(b"v", b"", None)[1:])


def test_scans_check_their_affixes_and_page() -> None:
    assert check_scan("ü", "", None, 0) == ("ü".encode(), b"")
    assert check_scan("", "\ud800", 3, 1) == (b"", "\ud800".encode("utf-8", "surrogatepass"))
    with pytest.raises(InvalidKey, match="prefix"):
        check_scan(1, "", None, 0)
    with pytest.raises(InvalidKey, match="suffix"):
        check_scan("", None, None, 0)
    for limit, offset in [(-1, 0), (None, -1), (1.5, 0)]:
        with pytest.raises(BadRequest):
            check_scan("", "", limit, offset)  # type: ignore[arg-type]


def test_packed_records_unpack_while_live() -> None:
    later = time.time() + 60
    packed = pack(b"v", b'{"a":1}', later)
    assert unpack_record(b"k", packed) == Record("k", b"v", {"a": 1}, later)
    assert unpack_record(b"k", pack(b"v", b"", None)) == Record("k", b"v")
    assert unpack_record(b"k", pack(b"v", b"", time.time() - 1)) is None  # expired
    assert unpack_record(b"k", b"not packed") is None
