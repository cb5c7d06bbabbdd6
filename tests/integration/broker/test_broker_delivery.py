"""What a returned ``publish`` means on the memory and HTTP brokers: the handler has run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import anyio
import pytest

import micro
from micro.broker import PublishError
from micro.broker.memory import MemoryBroker
from micro.registry import MemoryRegistry

pytestmark = pytest.mark.anyio


@dataclass
class Job:
    n: int


Factory = Callable[[str], micro.Service]


@pytest.fixture(params=["memory", "http"])
def make_service(request: pytest.FixtureRequest, registry: MemoryRegistry) -> Factory:
    broker: micro.broker.Broker | str = MemoryBroker() if request.param == "memory" else "http"

    def make(name: str) -> micro.Service:
        return micro.Service(name, address="127.0.0.1:0", registry=registry, broker=broker)

    return make


async def test_publish_returns_once_the_handler_has_run(make_service: Factory) -> None:
    done: list[int] = []
    sub = make_service("worker")

    @sub.subscriber("jobs")
    async def handle(job: Job) -> None:
        await anyio.sleep(0.01)
        done.append(job.n)

    pub = make_service("boss")
    async with sub.running(), pub.running():
        for n in range(5):
            await pub.publish("jobs", Job(n))
            assert done[-1] == n  # handled before publish returned


async def test_a_handler_may_publish_to_its_own_topic(make_service: Factory) -> None:
    seen: list[int] = []
    sub = make_service("countdown")

    @sub.subscriber("count")
    async def handle(job: Job) -> None:
        seen.append(job.n)
        if job.n:
            await sub.publish("count", Job(job.n - 1))

    async with sub.running():
        with anyio.fail_after(10):
            await sub.publish("count", Job(3))
    assert seen == [3, 2, 1, 0]


async def test_a_failing_member_hands_the_message_to_the_group(make_service: Factory) -> None:
    handled: list[int] = []
    broken = make_service("broken")
    working = make_service("working")

    @broken.subscriber("tasks", queue="workers")
    async def fail(job: Job) -> None:
        raise RuntimeError("disk full")

    @working.subscriber("tasks", queue="workers")
    async def work(job: Job) -> None:
        handled.append(job.n)

    pub = make_service("producer")
    async with broken.running(), working.running(), pub.running():
        for n in range(20):
            await pub.publish("tasks", Job(n))
    assert handled == list(range(20))  # each handled, by the member that could


async def test_publish_fails_when_no_member_handles_it(make_service: Factory) -> None:
    sub = make_service("hopeless")

    @sub.subscriber("tasks", queue="workers")
    async def fail(job: Job) -> None:
        raise RuntimeError("disk full")

    pub = make_service("producer")
    async with sub.running(), pub.running():
        with pytest.raises(PublishError, match=r"failed on message .*: RuntimeError"):
            await pub.publish("tasks", Job(1))


async def test_a_stopping_subscriber_finishes_what_it_is_handling(make_service: Factory) -> None:
    started = anyio.Event()
    handled: list[int] = []
    sub = make_service("draining")

    @sub.subscriber("slow")
    async def handle(job: Job) -> None:
        started.set()
        await anyio.sleep(0.2)
        handled.append(job.n)

    pub = make_service("sender")
    async with pub.running(), anyio.create_task_group() as tg:
        async with sub.running():
            tg.start_soon(pub.publish, "slow", Job(7))
            with anyio.fail_after(10):
                await started.wait()
        # The service stopped while the handler ran: it finished it first,
        # and the publish (awaited by the task group) succeeded.
        assert handled == [7]
