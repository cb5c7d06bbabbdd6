"""etcd's messages to and from micro's records: requests built, answers read (sans-IO)."""

from __future__ import annotations

from typing import Any

from . import _proto as pb
from ._records import (
    Delete,
    DeleteResult,
    KeyValue,
    Put,
    PutResult,
    Range,
    RangeResult,
    prefix_end,
)

__all__ = [
    "delete_result",
    "op_fields",
    "op_result",
    "put_result",
    "range_fields",
    "range_result",
    "header_revision",
]


def range_fields(key: bytes, prefix: bool) -> dict[str, Any]:
    return {"key": key, "range_end": prefix_end(key) if prefix else b""}


def op_fields(op: Put | Range | Delete) -> dict[str, Any]:
    if isinstance(op, Put):
        return {"request_put": {"key": op.key, "value": op.value, "lease": op.lease}}
    if isinstance(op, Range):
        return {"request_range": range_fields(op.key, op.prefix)}
    return {"request_delete_range": range_fields(op.key, op.prefix)}


def op_result(data: dict[str, Any]) -> PutResult | RangeResult | DeleteResult:
    if data["response_put"] is not None:
        return put_result(data["response_put"])
    if data["response_range"] is not None:
        return range_result(data["response_range"])
    return delete_result(data["response_delete_range"] or pb.decode(pb.DeleteRangeResponse, b""))


def header_revision(data: dict[str, Any]) -> int:
    header = data["header"]
    return int(header["revision"]) if header else 0


def _kv(data: dict[str, Any] | None) -> KeyValue | None:
    return KeyValue.from_wire(data) if data is not None else None


def put_result(data: dict[str, Any]) -> PutResult:
    return PutResult(header_revision(data), _kv(data["prev_kv"]))


def range_result(data: dict[str, Any]) -> RangeResult:
    return RangeResult(
        kvs=tuple(KeyValue.from_wire(kv) for kv in data["kvs"]),
        count=data["count"],
        revision=header_revision(data),
        more=data["more"],
    )


def delete_result(data: dict[str, Any]) -> DeleteResult:
    return DeleteResult(
        deleted=data["deleted"],
        revision=header_revision(data),
        prev_kvs=tuple(KeyValue.from_wire(kv) for kv in data["prev_kvs"]),
    )
