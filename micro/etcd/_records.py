"""What the etcd client takes and gives: records, transaction parts and errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..errors import MicroError, Unavailable

__all__ = [
    "EtcdUnavailable",
    "RevisionCompacted",
    "KeyValue",
    "KeyEvent",
    "Compare",
    "Put",
    "Range",
    "Delete",
    "PutResult",
    "RangeResult",
    "DeleteResult",
    "TxnResult",
    "Lease",
    "LeaseInfo",
    "prefix_end",
]


class EtcdUnavailable(Unavailable):
    """etcd could not be reached, or a watch stream broke."""


class RevisionCompacted(MicroError):
    """The revision asked for was compacted away; resync from a fresh read."""

    default_code = 410

    def __init__(self, compact_revision: int, detail: str | None = None) -> None:
        super().__init__(detail or f"revision compacted up to {compact_revision}", id="etcd")
        self.compact_revision = compact_revision


# -- records -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> KeyValue:
        """From a decoded ``mvccpb.KeyValue``."""
        return cls(
            key=data["key"],
            value=data["value"],
            create_revision=data["create_revision"],
            mod_revision=data["mod_revision"],
            version=data["version"],
            lease=data["lease"],
        )


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """A key was put or deleted. A delete's ``kv`` holds only the key and revision."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @property
    def created(self) -> bool:
        """A put that made the key (rather than changing it)."""
        return self.type == "PUT" and self.kv.version == 1


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: tuple[KeyValue, ...]
    count: int
    revision: int
    more: bool = False


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: int
    revision: int
    prev_kvs: tuple[KeyValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    responses: tuple[PutResult | RangeResult | DeleteResult, ...] = ()


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: int


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    id: int
    ttl: int  # seconds left; -1 once expired or revoked
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()


# -- transaction parts ---------------------------------------------------------

CompareTarget = Literal["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
CompareResult = Literal["EQUAL", "GREATER", "LESS", "NOT_EQUAL"]
#: each target's number in ``Compare.CompareTarget`` and the field its value goes in
_TARGETS: dict[str, tuple[int, str]] = {
    "VERSION": (0, "version"),
    "CREATE": (1, "create_revision"),
    "MOD": (2, "mod_revision"),
    "VALUE": (3, "value"),
    "LEASE": (4, "lease"),
}
_RESULTS: dict[str, int] = {"EQUAL": 0, "GREATER": 1, "LESS": 2, "NOT_EQUAL": 3}


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a transaction: ``target`` of ``key`` compared with ``value``."""

    key: bytes
    target: CompareTarget
    result: CompareResult
    value: int | bytes

    def __post_init__(self) -> None:
        if self.target not in _TARGETS:
            raise ValueError(f"Compare target must be one of {', '.join(_TARGETS)}")
        if self.result not in _RESULTS:
            raise ValueError(f"Compare result must be one of {', '.join(_RESULTS)}")
        if (self.target == "VALUE") != isinstance(self.value, bytes):
            raise TypeError("a VALUE comparison takes bytes, the other targets an int")

    @classmethod
    def absent(cls, key: bytes) -> Compare:
        """The key does not exist (the basis of create-if-absent and locks)."""
        return cls(key, "CREATE", "EQUAL", 0)

    @classmethod
    def unchanged(cls, key: bytes, mod_revision: int) -> Compare:
        """The key was last written at ``mod_revision`` (compare-and-swap)."""
        return cls(key, "MOD", "EQUAL", mod_revision)

    def to_wire(self) -> dict[str, Any]:
        """The fields of etcd's ``Compare`` message."""
        target, field = _TARGETS[self.target]
        return {
            "key": self.key,
            "target": target,
            "result": _RESULTS[self.result],
            field: self.value,
        }


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Range:
    key: bytes
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes
    prefix: bool = False


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key: etcd reads "\0" as "to the end of the keyspace"
