"""The store conformance suite, run against every store micro ships."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from micro.store import EtcdStore, FileStore, MemoryStore, RedisStore, Store
from micro.testing import STORE_CHECKS, StoreFactory
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio

Check = Callable[[StoreFactory], Awaitable[None]]


@pytest.fixture(params=["memory", "file", "etcd", "redis"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "memory":
        memory = MemoryStore()
        return lambda: memory  # one store, so data outlives a close as in the others
    if request.param == "file":
        path = tmp_path / "store.db"

        def file() -> Store:
            return FileStore(path)

        return file
    if request.param == "etcd":
        etcd: ServerProcess = request.getfixturevalue("etcd_server")

        def etcd_store() -> Store:
            return EtcdStore(etcd.url)

        return etcd_store
    redis: ServerProcess = request.getfixturevalue("redis_server")

    def redis_store() -> Store:
        return RedisStore(redis.url)

    return redis_store


@pytest.mark.parametrize("check", list(STORE_CHECKS.values()), ids=list(STORE_CHECKS))
async def test_store_conforms(store_factory: StoreFactory, check: Check) -> None:
    await check(store_factory)
