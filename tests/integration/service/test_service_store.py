"""A service's store: chosen by option or MICRO_STORE, open while the service runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

import micro
from micro.store import FileStore, MemoryStore, Record, Table

pytestmark = pytest.mark.anyio


@dataclass
class User:
    name: str
    age: int


async def test_service_store_by_url(tmp_path: Path) -> None:
    path = tmp_path / "svc.db"
    svc = micro.Service("stored", address="127.0.0.1:0", registry="memory", store=f"file://{path}")
    assert isinstance(svc.store, FileStore)
    async with svc.running():
        await svc.store.write(Record("k", b"v"))
        users = Table(svc.store, "users")
        await users.put("ann", User("ann", 30))
        assert await users.get("ann", User) == User("ann", 30)
    assert path.exists()
    again = micro.Service(
        "stored", address="127.0.0.1:0", registry="memory", store=f"file://{path}"
    )
    async with again.running():
        [record] = await again.store.read("k")
        assert record.value == b"v"


async def test_service_store_from_the_environment() -> None:
    svc = micro.Service("envstore", registry="memory", environ={"MICRO_STORE": "memory"}, argv=[])
    assert isinstance(svc.store, MemoryStore)
