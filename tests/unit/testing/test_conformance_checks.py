"""The conformance checks of micro.testing run against micro's own brokers, codecs and
selectors, and catch a broken one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from micro.broker import MemoryBroker
from micro.codec import get
from micro.registry import Node
from micro.selector.base import (
    ConsistentHashSelector,
    LeastInflightSelector,
    RandomSelector,
    RoundRobinSelector,
)
from micro.testing import BROKER_CHECKS, check_codec, check_selector
from micro.testing.broker import BrokerFactory


@pytest.mark.anyio
@pytest.mark.parametrize("check", list(BROKER_CHECKS))
async def test_memory_broker(check: str) -> None:
    await BROKER_CHECKS[check](MemoryBroker)


class _DroppingBroker(MemoryBroker):
    """Loses every other message: the checks must notice."""

    dropped = 0

    async def publish(self, message: Any) -> None:
        _DroppingBroker.dropped += 1
        if _DroppingBroker.dropped % 2:
            return
        await super().publish(message)


@pytest.mark.anyio
async def test_a_broker_that_loses_messages_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import micro.testing.broker as checks

    monkeypatch.setattr(checks, "DELIVERY_TIMEOUT", 0.5)
    factory: BrokerFactory = _DroppingBroker
    with pytest.raises(AssertionError, match="all 10 messages"):
        await checks.check_broadcast_and_queue_groups(factory)


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_structured_codecs(name: str) -> None:
    check_codec(get(name))


def test_bytes_codec() -> None:
    check_codec(get("bytes"), [b"", b"\x00\xff" * 100], into=bytes, garbage=None)


def test_a_lossy_codec_fails() -> None:
    class Lossy:
        name = "lossy"
        content_type = "application/x-lossy"

        def encode(self, value: Any) -> bytes:
            return b"{}"

        def decode(self, data: bytes | memoryview, into: Any = Any) -> Any:
            return {}

    with pytest.raises(AssertionError, match="came back as"):
        check_codec(Lossy())


@pytest.mark.parametrize(
    "factory",
    [RandomSelector, RoundRobinSelector, LeastInflightSelector, lambda: ConsistentHashSelector()],
)
def test_selectors(factory: Any) -> None:
    check_selector(factory)


def test_a_selector_picking_outside_the_nodes_fails() -> None:
    class Stale:
        def __init__(self) -> None:
            self.last: Node | None = None

        def select(self, service: str, nodes: Sequence[Node], key: str | None = None) -> Node:
            self.last = self.last or nodes[0]
            return self.last

        def started(self, node: Node) -> None:
            pass

        def finished(self, node: Node) -> None:
            pass

    with pytest.raises(AssertionError, match="not one of"):
        check_selector(Stale)
