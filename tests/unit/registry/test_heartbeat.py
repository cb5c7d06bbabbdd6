"""A registration: registered, kept alive by its heartbeat, deregistered."""

from __future__ import annotations

import anyio
import pytest

from micro.registry import MemoryRegistry, ServiceNotFound
from micro.registry.base import Node, ServiceRecord
from micro.registry.heartbeat import Registration

pytestmark = pytest.mark.anyio

RECORD = ServiceRecord(name="heartbeat-test", nodes=(Node(id="n1", address="127.0.0.1:1"),))


class FlakyRegistry(MemoryRegistry):
    """The memory registry, counting registrations and refusing them while ``down``."""

    down = False
    registrations = 0

    async def register(self, service: ServiceRecord, *, ttl: float | None = None) -> None:
        if self.down:
            raise ConnectionError("registry unreachable")
        self.registrations += 1
        await super().register(service, ttl=ttl)


async def test_registered_refreshed_and_deregistered() -> None:
    registry = FlakyRegistry()
    registration = Registration(registry, ttl=30, interval=0.01)
    async with registry:
        await registration.register(RECORD)
        assert registration.record == RECORD
        assert [r.name for r in await registry.get_service(RECORD.name)] == [RECORD.name]
        async with anyio.create_task_group() as tg:
            tg.start_soon(registration.heartbeat)
            with anyio.fail_after(10):
                while registry.registrations < 3:
                    await anyio.sleep(0.01)
            await registration.deregister()
        # the heartbeat ended by itself once the record was gone
        assert registration.record is None
        with pytest.raises(ServiceNotFound):
            await registry.get_service(RECORD.name)
        await registration.deregister()  # nothing registered: nothing to do


async def test_a_failing_heartbeat_is_recorded_until_one_succeeds() -> None:
    registry = FlakyRegistry()
    registration = Registration(registry, ttl=30, interval=0.01)
    async with registry:
        await registration.register(RECORD)
        await registration.check()
        registry.down = True
        with pytest.raises(ConnectionError, match="registry unreachable"):
            await registration.heartbeat()
        assert registration.error == "re-registering failed: ConnectionError: registry unreachable"
        with pytest.raises(ConnectionError, match="re-registering failed"):
            await registration.check()
        registry.down = False
        async with anyio.create_task_group() as tg:
            tg.start_soon(registration.heartbeat)
            with anyio.fail_after(10):
                while registration.error:
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        await registration.check()
        await registration.deregister()


async def test_a_failed_registration_is_not_recorded() -> None:
    registry = FlakyRegistry()
    registry.down = True
    registration = Registration(registry, ttl=30, interval=10)
    async with registry:
        with pytest.raises(ConnectionError):
            await registration.register(RECORD)
        assert registration.record is None
        await registration.deregister()
