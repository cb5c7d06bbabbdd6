"""micro.testing.check_broker against the NATS broker on a real nats-server (the memory
broker runs it in tests/unit/testing/test_conformance_checks.py)."""

from __future__ import annotations

import pytest

from micro.broker.nats import NatsBroker
from micro.testing import BROKER_CHECKS
from tests.servers import ServerProcess
from tests.servers_nats import nats_server

__all__ = ["nats_server"]

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("check", list(BROKER_CHECKS))
async def test_nats_broker(check: str, nats_server: ServerProcess) -> None:
    await BROKER_CHECKS[check](lambda: NatsBroker([nats_server.url]))
