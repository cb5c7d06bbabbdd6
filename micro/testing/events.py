"""A conformance suite every EventStream runs, backends of micro's and users' alike.

``await check_events(factory)`` runs every check; ``EVENTS_CHECKS`` names them
one by one for a test per check. ``factory`` makes a new, unopened stream;
each check opens it with ``async with`` and uses topics no other check (or
run) uses, so a shared backend server needs no cleanup between checks.
Redelivery is checked with a short ``ack_wait`` and a bounded wait for the
event to come back: no check decides anything by how long something took.

It is one module past the usual size because a suite is read as a whole: short
checks, the helpers they share, and the list that runs them, in one place.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from ..errors import BadRequest
from ..events.base import DEAD_SUFFIX, Event, EventStream, EventsUnavailable

__all__ = [
    "EVENTS_CHECKS",
    "EventsFactory",
    "check_events",
    "check_publish_and_read",
    "check_ordering",
    "check_ack",
    "check_nack_redelivers",
    "check_redelivery_after_ack_wait",
    "check_dead_letter_after_retry_limit",
    "check_groups_share",
    "check_no_group_gets_all",
    "check_offset_replay",
    "check_retention",
    "check_bad_input",
    "check_reject_undecodable",
    "check_reopen",
]

EventsFactory = Callable[[], EventStream]
T = TypeVar("T")

#: seconds any one wait for an event may take before the check fails
WAIT = 20.0
#: a short ack_wait, so redelivery checks are quick (long enough for a loaded machine to ack in)
SHORT_ACK_WAIT = 1.0
#: seconds a check watches for a redelivery that must not come: twice SHORT_ACK_WAIT,
#: the time after which one would have come, with as much again to spare
QUIET = SHORT_ACK_WAIT * 2


def unique_topic(stem: str) -> str:
    return f"conform.{stem}.{uuid.uuid4().hex[:10]}"


@dataclass
class Order:
    id: int
    item: str


async def _take(events: AsyncIterator[Event], count: int) -> list[Event]:
    """The next ``count`` events, within WAIT seconds."""
    got: list[Event] = []
    with anyio.fail_after(WAIT):
        while len(got) < count:
            got.append(await events.__anext__())
    return got


async def _nothing_more(events: AsyncIterator[Event], within: float) -> None:
    """Fail if an event arrives within ``within`` seconds (for "no more deliveries")."""
    with anyio.move_on_after(within):
        event = await events.__anext__()
        raise AssertionError(f"no more events expected, got {event}")


async def _eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """``await read()`` again every little while until ``done`` says yes, within WAIT seconds."""
    with anyio.fail_after(WAIT):
        while True:
            value = await read()
            if done(value):
                return value
            await anyio.sleep(0.05)


async def _raises(exc_type: type[Exception], awaitable: Awaitable[Any], what: str) -> None:
    try:
        await awaitable
    except exc_type:
        return
    raise AssertionError(f"{what} must raise {exc_type.__name__}")


async def check_publish_and_read(factory: EventsFactory) -> None:
    """publish returns the stored event (id, time, metadata); read returns it as stored."""
    topic = unique_topic("publish")
    async with factory() as stream:
        first = await stream.publish(topic, Order(1, "book"), metadata={"Source": "checks"})
        assert first.topic == topic and first.id and first.timestamp > 0, first
        assert first.metadata["source"] == "checks", first.metadata
        assert first.metadata["content-type"] == "application/json", first.metadata
        assert first.decode(Order) == Order(1, "book")
        second = await stream.publish(topic, b"\x00raw\xff")
        assert second.metadata["content-type"] == "application/octet-stream"
        assert second.id != first.id
        stored = await stream.read(topic)
        assert [e.id for e in stored] == [first.id, second.id], stored
        assert stored[0].decode(Order) == Order(1, "book")
        assert stored[1].payload == b"\x00raw\xff"
        assert stored[0].metadata["source"] == "checks"
        assert await stream.read(topic, limit=1) == stored[:1]
        assert await stream.read(unique_topic("never")) == []


async def check_ordering(factory: EventsFactory) -> None:
    """A topic's events are delivered in the order they were published."""
    topic = unique_topic("order")
    async with factory() as stream:
        for n in range(50):
            await stream.publish(topic, {"n": n})
        async with stream.consume(topic, offset="start") as events:
            got = await _take(events, 50)
            for event in got:
                await event.ack()
        assert [e.decode(dict)["n"] for e in got] == list(range(50))
        assert all(e.deliveries == 1 for e in got)


async def check_ack(factory: EventsFactory) -> None:
    """An acknowledged event is not delivered to its group again; new ones are."""
    topic = unique_topic("ack")
    async with factory() as stream:
        async with stream.consume(topic, group="billing", ack_wait=SHORT_ACK_WAIT) as events:
            published = [await stream.publish(topic, {"n": n}) for n in range(3)]
            got = await _take(events, 3)
            assert [e.id for e in got] == [e.id for e in published]
            for event in got:
                await event.ack()
            await _nothing_more(events, QUIET)
        later = await stream.publish(topic, {"n": 3})
        async with stream.consume(topic, group="billing", offset="start") as events:
            [event] = await _take(events, 1)
            assert event.id == later.id, "a group goes on from where it was, offset or not"
            await event.ack()


async def check_nack_redelivers(factory: EventsFactory) -> None:
    """A nacked event comes back (its delivery counted) well before ack_wait."""
    topic = unique_topic("nack")
    stream = factory()
    async with stream, stream.consume(topic, group="g", ack_wait=WAIT * 3) as events:
        published = await stream.publish(topic, "once more")
        [first] = await _take(events, 1)
        assert first.id == published.id and first.deliveries == 1
        await first.nack()
        [again] = await _take(events, 1)
        assert again.id == published.id and again.deliveries == 2, again
        await again.ack()


async def check_redelivery_after_ack_wait(factory: EventsFactory) -> None:
    """An event not acknowledged within ack_wait is delivered again, to a consumer of
    the group that did not have it, once the consumer that had it is gone."""
    topic = unique_topic("ackwait")
    async with factory() as stream:
        async with stream.consume(topic, group="g", ack_wait=SHORT_ACK_WAIT) as events:
            published = await stream.publish(topic, "late")
            await _take(events, 1)
            [again] = await _take(events, 1)  # never acknowledged: comes back
            # At least the second delivery: a server may count one it lost on the
            # way (nats-server 2.9 does when a pull request expires as the event
            # comes due), and the event then comes back an ack_wait later.
            assert again.id == published.id and again.deliveries >= 2, again
        # Left unacknowledged by a consumer that stopped: the group's next consumer gets it.
        async with stream.consume(topic, group="g", ack_wait=SHORT_ACK_WAIT) as events:
            [third] = await _take(events, 1)
            assert third.id == published.id and third.deliveries >= 3, third
            await third.ack()
            await _nothing_more(events, QUIET)


async def check_dead_letter_after_retry_limit(factory: EventsFactory) -> None:
    """After 1 + retry_limit deliveries, an event goes to ``<topic>.dead``, and no further."""
    topic = unique_topic("dead")
    async with factory() as stream:
        async with stream.consume(
            topic, group="g", ack_wait=SHORT_ACK_WAIT, retry_limit=2
        ) as events:
            doomed = await stream.publish(topic, {"fails": True}, metadata={"k": "v"})
            fine = await stream.publish(topic, {"fails": False})
            seen: list[int] = []
            with anyio.fail_after(WAIT):
                while True:
                    event = await events.__anext__()
                    if event.id == fine.id:
                        await event.ack()
                        continue
                    seen.append(event.deliveries)
                    await event.nack()
                    if len(seen) == 3:
                        break
            assert seen == [1, 2, 3], seen
            await _nothing_more(events, QUIET)
        [letter] = await _eventually(lambda: stream.read(topic + DEAD_SUFFIX), bool)
        assert letter.payload == doomed.payload and letter.metadata["k"] == "v"
        assert letter.metadata["dead-id"] == doomed.id
        assert letter.metadata["dead-topic"] == topic
        assert letter.metadata["dead-group"] == "g"
        assert letter.metadata["dead-deliveries"] == "3"
        assert letter.metadata["dead-reason"]
        assert letter.decode(dict) == {"fails": True}


async def check_groups_share(factory: EventsFactory) -> None:
    """Consumers of one group share its events: each goes to one of them; other
    groups get every event too."""
    topic = unique_topic("share")
    count = 100
    async with factory() as stream:
        got: dict[str, list[str]] = {"a": [], "b": [], "other": []}
        done = anyio.Event()

        async def consume(name: str, group: str) -> None:
            async with stream.consume(topic, group=group, offset="start") as events:
                async for event in events:
                    got[name].append(event.id)
                    await event.ack()
                    if len(got["a"]) + len(got["b"]) >= count and len(got["other"]) >= count:
                        done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, "a", "workers")
            tg.start_soon(consume, "b", "workers")
            tg.start_soon(consume, "other", "audit")
            published = [(await stream.publish(topic, {"n": n})).id for n in range(count)]
            with anyio.fail_after(WAIT):
                await done.wait()
            await anyio.sleep(SHORT_ACK_WAIT)  # room for a duplicate to show itself
            tg.cancel_scope.cancel()
        shared = got["a"] + got["b"]
        assert sorted(shared) == sorted(published), "each event to exactly one group member"
        assert got["other"] == published, "another group gets every event, in order"


async def check_no_group_gets_all(factory: EventsFactory) -> None:
    """Consumers without a group each get every event published after they start."""
    topic = unique_topic("nogroup")
    async with factory() as stream:
        before = await stream.publish(topic, "before")
        async with (
            stream.consume(topic) as first,
            stream.consume(topic) as second,
        ):
            published = [(await stream.publish(topic, {"n": n})).id for n in range(10)]
            for events in (first, second):
                got = await _take(events, 10)
                assert [e.id for e in got] == published, "offset None starts at new events"
                assert before.id not in [e.id for e in got]
                for event in got:
                    await event.ack()


async def check_offset_replay(factory: EventsFactory) -> None:
    """offset="start" replays everything kept; a time replays from that time on."""
    topic = unique_topic("offset")
    async with factory() as stream:
        early = [await stream.publish(topic, {"n": n}) for n in range(3)]
        mark = await _eventually(  # an event with a later timestamp than the early ones
            lambda: stream.publish(topic, {"n": 3}), lambda e: e.timestamp > early[-1].timestamp
        )
        late = [mark, *[await stream.publish(topic, {"n": n}) for n in range(4, 6)]]
        kept = await stream.read(topic)
        async with stream.consume(topic, offset="start") as events:
            got = await _take(events, len(kept))
            assert [e.id for e in got] == [e.id for e in kept]
        async with stream.consume(topic, offset=mark.timestamp) as events:
            got = await _take(events, len(late))
            assert [e.id for e in got] == [e.id for e in late], "replay from a time"
        since = await stream.read(topic, since=mark.timestamp)
        assert [e.id for e in since] == [e.id for e in late]
        async with stream.consume(topic, group="replay", offset=mark.timestamp) as events:
            got = await _take(events, len(late))
            assert [e.id for e in got] == [e.id for e in late], "a new group from a time"
            for event in got:
                await event.ack()


async def check_retention(factory: EventsFactory) -> None:
    """A topic keeps at most max_events events and none older than max_age."""
    topic = unique_topic("retain")
    async with factory() as stream:
        await stream.retain(topic, max_events=3)
        published = [await stream.publish(topic, {"n": n}) for n in range(6)]
        last = [e.id for e in published[3:]]
        await _eventually(lambda: stream.read(topic), lambda got: [e.id for e in got] == last)
        aged = unique_topic("age")
        await stream.retain(aged, max_age=1.0)
        old = await stream.publish(aged, "old")
        assert [e.id for e in await stream.read(aged)] == [old.id]
        await _eventually(lambda: stream.read(aged), lambda got: not got)
        new = await stream.publish(aged, "new")
        assert [e.id for e in await stream.read(aged)] == [new.id]
        async with stream.consume(aged, offset="start") as events:
            [event] = await _take(events, 1)
            assert event.id == new.id, "an event past max_age is not delivered"


async def check_bad_input(factory: EventsFactory) -> None:
    """Bad topics, groups, offsets, options and metadata raise BadRequest and change nothing."""
    topic = unique_topic("bad")
    async with factory() as stream:
        bad_topics: list[Any] = ["", "a b", "a..b", ".a", "a.", "a.*", "a.>", "tab\t", 7]
        for bad_topic in bad_topics:
            await _raises(BadRequest, stream.publish(bad_topic, "x"), f"topic {bad_topic!r}")
            await _raises(BadRequest, stream.read(bad_topic), f"read of topic {bad_topic!r}")
        consume_options: list[dict[str, Any]] = [
            {"group": ""},
            {"group": "a.b"},
            {"group": "has space"},
            {"offset": "yesterday"},
            {"offset": float("nan")},
            {"ack_wait": 0},
            {"ack_wait": -1},
            {"retry_limit": -1},
        ]
        for options in consume_options:
            try:
                async with stream.consume(topic, **options):
                    pass
            except BadRequest:
                continue
            raise AssertionError(f"consume with {options} must raise BadRequest")
        await _raises(BadRequest, stream.publish(topic, "x", metadata={"a b": "v"}), "meta key")
        await _raises(BadRequest, stream.publish(topic, "x", metadata={"k": "a\nb"}), "meta value")
        await _raises(BadRequest, stream.publish(topic, object()), "an unencodable message")
        await _raises(BadRequest, stream.retain(topic, max_events=0), "max_events=0")
        await _raises(BadRequest, stream.retain(topic, max_age=-1), "max_age=-1")
        assert await stream.read(topic) == [], "bad input stored nothing"


async def check_reject_undecodable(factory: EventsFactory) -> None:
    """An event that does not decode raises BadRequest; rejected, it is dead-lettered
    at once, and the consumer goes on with the next event."""
    topic = unique_topic("reject")
    async with factory() as stream:
        async with stream.consume(topic, group="g", ack_wait=WAIT * 3) as events:
            bad = await stream.publish(topic, b"\xff not json", content_type="application/json")
            good = await stream.publish(topic, Order(2, "pen"))
            [first] = await _take(events, 1)
            assert first.id == bad.id
            try:
                first.decode(Order)
            except BadRequest as exc:
                await first.reject(f"undecodable: {exc}")
            else:
                raise AssertionError("decoding a bad payload must raise BadRequest")
            [second] = await _take(events, 1)
            assert second.id == good.id and second.decode(Order) == Order(2, "pen")
            await second.ack()
        dead = await _eventually(lambda: stream.read(topic + DEAD_SUFFIX), bool)
        assert [e.metadata["dead-id"] for e in dead] == [bad.id]
        assert dead[0].metadata["dead-reason"].startswith("undecodable")


async def check_reopen(factory: EventsFactory) -> None:
    """Events and a group's place outlive closing the stream."""
    topic = unique_topic("reopen")
    async with factory() as stream:
        kept = [await stream.publish(topic, {"n": n}) for n in range(3)]
        async with stream.consume(topic, group="g", offset="start") as events:
            [first] = await _take(events, 1)
            await first.ack()
    async with factory() as stream:
        assert [e.id for e in await stream.read(topic)] == [e.id for e in kept]
        async with stream.consume(topic, group="g") as events:
            got = await _take(events, 2)
            assert [e.id for e in got] == [e.id for e in kept[1:]]
            for event in got:
                await event.ack()
    await _raises(EventsUnavailable, stream.publish(topic, "x"), "publishing when closed")


EVENTS_CHECKS: dict[str, Callable[[EventsFactory], Awaitable[None]]] = {
    "publish_and_read": check_publish_and_read,
    "ordering": check_ordering,
    "ack": check_ack,
    "nack_redelivers": check_nack_redelivers,
    "redelivery_after_ack_wait": check_redelivery_after_ack_wait,
    "dead_letter_after_retry_limit": check_dead_letter_after_retry_limit,
    "groups_share": check_groups_share,
    "no_group_gets_all": check_no_group_gets_all,
    "offset_replay": check_offset_replay,
    "retention": check_retention,
    "bad_input": check_bad_input,
    "reject_undecodable": check_reject_undecodable,
    "reopen": check_reopen,
}


async def check_events(factory: EventsFactory) -> None:
    """Run every check against streams made by ``factory``; raises AssertionError."""
    for check in EVENTS_CHECKS.values():
        await check(factory)
