"""The registry conformance suite, run against every registry micro ships."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from micro.registry import MemoryRegistry, Registry
from micro.registry.etcd import EtcdRegistry
from micro.testing import REGISTRY_CHECKS, RegistryFactory
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio

Check = Callable[[RegistryFactory], Awaitable[None]]


@pytest.fixture(params=["memory", "etcd"])
def registry_factory(request: pytest.FixtureRequest) -> RegistryFactory:
    if request.param == "memory":
        return MemoryRegistry
    server: ServerProcess = request.getfixturevalue("etcd_server")

    def etcd() -> Registry:
        return EtcdRegistry(server.url)

    return etcd


@pytest.mark.parametrize("check", list(REGISTRY_CHECKS.values()), ids=list(REGISTRY_CHECKS))
async def test_registry_conforms(registry_factory: RegistryFactory, check: Check) -> None:
    await check(registry_factory)
