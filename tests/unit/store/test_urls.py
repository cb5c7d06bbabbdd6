"""Choosing a store by URL or MICRO_STORE, lazy backends, and the memory store's sweep."""

from __future__ import annotations

import sys
import time

import anyio
import pytest

import micro.store
from micro.store import (
    DEFAULT_STORE,
    EtcdStore,
    FileStore,
    MemoryStore,
    Record,
    RedisStore,
    StoreOptions,
    Table,
    default_store,
    from_url,
    resolve_store,
)
from micro.store import memory as memory_module

pytestmark = pytest.mark.anyio


def test_from_url_picks_the_backend() -> None:
    assert isinstance(from_url("memory"), MemoryStore)
    assert from_url("memory") is not from_url("memory")
    assert isinstance(from_url("file"), FileStore)
    etcd = from_url("etcd://10.0.0.1:2379")
    assert isinstance(etcd, EtcdStore) and etcd.client.endpoint == "http://10.0.0.1:2379"
    secure = from_url("etcd+https://etcd.example:2379/")
    assert isinstance(secure, EtcdStore) and secure.client.endpoint == "https://etcd.example:2379"
    redis = from_url("redis://10.0.0.2:6390/2")
    assert isinstance(redis, RedisStore) and redis.address == "10.0.0.2:6390/2"
    options = StoreOptions(database="app", max_value_size=10)
    assert from_url("memory", options=options).options is options
    with pytest.raises(ValueError, match="unknown store"):
        from_url("mongodb://x")


def test_resolve_store_shares_one_store_per_url(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    assert resolve_store(store) is store
    assert resolve_store("memory") is default_store()
    monkeypatch.setenv("MICRO_STORE", "memory")
    assert resolve_store(None) is default_store()
    monkeypatch.delenv("MICRO_STORE")
    assert DEFAULT_STORE == "file"
    assert isinstance(resolve_store(None), FileStore)
    assert resolve_store(None) is resolve_store("file")
    assert resolve_store("etcd://127.0.0.1:1") is resolve_store("etcd://127.0.0.1:1")


def test_a_missing_optional_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "micro.store.redis", raising=False)
    monkeypatch.delitem(vars(micro.store), "RedisStore", raising=False)
    stub = micro.store.__getattr__("RedisStore")
    with pytest.raises(ImportError, match=r"pip install 'micro-runtime\[redis\]'"):
        stub("redis://127.0.0.1:6379/0")
    with pytest.raises(ImportError, match="micro-runtime"):
        from_url("redis://127.0.0.1:6379/0")
    with pytest.raises(AttributeError):
        micro.store.__getattr__("NoSuchStore")


async def test_table_binds_the_namespace() -> None:
    async with MemoryStore(options=StoreOptions(database="d", table="t")) as store:
        table = Table(store, "users")
        assert (table.database, table.table) == ("d", "users")
        assert "users" in repr(table)
        await table.put("k", [1, 2])
        assert await store.list(database="d", table="users") == ["k"]
        assert await store.list() == []
        assert await table.get("k", list[int]) == [1, 2]
        assert await table.get("k") == [1, 2]


async def test_the_memory_store_sweeps_expired_records(monkeypatch: pytest.MonkeyPatch) -> None:
    async with MemoryStore() as store:
        for n in range(5):
            await store.write(Record(f"k{n}", b"v"), ttl=0.05)
        await anyio.sleep(0.06)  # past their expiry
        monkeypatch.setattr(memory_module, "SWEEP_INTERVAL", 0.0)
        await store.write(Record("fresh", b"v"))
        table = store._tables[("micro", "micro")]
        assert list(table.entries) == ["fresh"] and table.keys == ["fresh"]
        assert time.time() - store._swept < 1
