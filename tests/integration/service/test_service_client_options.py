"""Service(selector=..., retries=..., attempt_timeout=...) configure the service's own client,
in code, from MICRO_* variables and from --micro-* flags."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

import micro
from micro.registry import MemoryRegistry, Node
from micro.selector.base import LeastInflightSelector, RoundRobinSelector
from tests.servers import free_port

from ..conftest import Greeter, Req, Resp

pytestmark = pytest.mark.anyio


def test_in_code() -> None:
    service = micro.Service(
        "opts",
        registry=MemoryRegistry(),
        selector="roundrobin",
        retries=5,
        attempt_timeout=1.5,
        argv=[],
        environ={},
    )
    assert isinstance(service.client.selector, RoundRobinSelector)
    assert service.client.retries == 5
    assert service.client.attempt_timeout == 1.5
    selector = LeastInflightSelector()
    assert micro.Service("opts", registry="memory", selector=selector).client.selector is selector


def test_from_the_environment_and_flags() -> None:
    service = micro.Service(
        "opts",
        registry="memory",
        argv=["--micro-selector=leastinflight", "--micro-attempt-timeout=250ms"],
        environ={"MICRO_RETRIES": "0", "MICRO_SELECTOR": "random"},
    )
    assert isinstance(service.client.selector, LeastInflightSelector)  # the flag wins
    assert service.client.retries == 0
    assert service.client.attempt_timeout == 0.25
    defaults = micro.Service("opts", registry="memory", argv=[], environ={})
    assert defaults.client.retries == 2 and defaults.client.attempt_timeout is None


def test_a_wrong_selector_says_what_is_accepted() -> None:
    with pytest.raises(TypeError, match="selector must be"):
        micro.Service("opts", registry="memory", selector=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown selector"):
        micro.Service("opts", registry="memory", selector="sideways", argv=[], environ={})


@pytest.mark.parametrize(("retries", "failures_allowed"), [(0, True), (2, False)])
async def test_retries_decide_whether_a_dead_node_fails_a_call(
    registry: MemoryRegistry, retries: int, failures_allowed: bool
) -> None:
    """One live node and one that refuses connections: without retries a call that lands
    on the dead one fails; with them it goes on to the live one."""
    greeter = micro.Service("greeter", address="127.0.0.1:0", registry=registry)
    greeter.handle(Greeter())
    caller = micro.Service(
        "caller",
        address="127.0.0.1:0",
        registry=registry,
        selector="roundrobin",
        retries=retries,
        argv=[],
        environ={},
    )
    with anyio.fail_after(30):
        async with greeter.running(), caller.running():
            [record] = await registry.get_service("greeter")
            dead = Node(id="dead", address=f"127.0.0.1:{free_port()}")
            await registry.register(dataclasses.replace(record, nodes=(*record.nodes, dead)))
            failures = 0
            for _ in range(2):
                try:
                    resp = await caller.call("greeter", "Greeter.Hello", Req("x"), Resp)
                    assert resp == Resp(message="Hello x")
                except micro.Unavailable:
                    failures += 1
            assert (failures > 0) is failures_allowed
