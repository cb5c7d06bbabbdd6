"""Events: names, offsets, options and payloads checked the same way by every backend."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from micro.errors import BadRequest, PayloadTooLarge
from micro.events import (
    Event,
    FileEventStream,
    MemoryEventStream,
    RedisEventStream,
    default_events,
    from_url,
    resolve_events,
)
from micro.events.base import (
    MAX_PAYLOAD,
    check_consume,
    check_consume_call,
    check_group,
    check_read,
    check_topic,
    dead_metadata,
    encode_event,
    start_time,
)


@dataclass
class Order:
    id: int


@pytest.mark.parametrize("topic", ["orders", "orders.created", "a-b_c.d1", "ünï.cødé"])
def test_good_topics(topic: str) -> None:
    assert check_topic(topic) == topic


@pytest.mark.parametrize("topic", ["", " ", "a b", "a..b", ".a", "a.", "*", "a.>", "\x00", None])
def test_bad_topics(topic: object) -> None:
    with pytest.raises(BadRequest):
        check_topic(topic)


def test_groups() -> None:
    assert check_group(None) is None
    assert check_group("billing-1_a") == "billing-1_a"
    for bad in ["", "a.b", "a b", "~x", "a*", 3]:
        with pytest.raises(BadRequest):
            check_group(bad)


def test_offsets() -> None:
    assert start_time(None) is None and start_time("new") is None
    assert start_time("start") == 0.0
    assert start_time(12.5) == 12.5 and start_time(-3) == 0.0
    moment = datetime(2026, 1, 2, tzinfo=UTC)
    assert start_time(moment) == moment.timestamp()
    for bad in ["yesterday", float("inf"), float("nan"), True, [1]]:
        with pytest.raises(BadRequest):
            start_time(bad)  # type: ignore[arg-type]


def test_consume_options() -> None:
    check_consume(0.1, 0)
    for ack_wait, retry_limit in [(0, 1), (-1, 1), (float("inf"), 1), (1, -1), (1, 1.5), (1, True)]:
        with pytest.raises(BadRequest):
            check_consume(ack_wait, retry_limit)  # type: ignore[arg-type]


def test_consume_and_read_calls_are_checked_in_full() -> None:
    assert check_consume_call("orders", "billing", "start", 1.0, 0) == 0.0
    assert check_consume_call("orders", None, None, 1.0, 0) is None
    bad_calls = [
        ("a b", None, None, 1.0, 0),
        ("orders", "a.b", None, 1.0, 0),
        ("orders", None, "yesterday", 1.0, 0),
        ("orders", None, None, 0, 0),
        ("orders", None, None, 1.0, -1),
    ]
    for call in bad_calls:
        with pytest.raises(BadRequest):
            check_consume_call(*call)  # type: ignore[arg-type]
    assert check_read("orders", 12.5, None) == 12.5
    assert check_read("orders", "new", 0) is None
    for topic, since, limit in [("", "start", None), ("o", "x", None), ("o", "start", -1)]:
        with pytest.raises(BadRequest):
            check_read(topic, since, limit)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        check_read("orders", "start", 1.5)  # type: ignore[arg-type]


def test_encoding_carries_the_content_type() -> None:
    payload, meta = encode_event("t", Order(1), {"Trace": "x"}, None)
    assert payload == b'{"id":1}'
    assert meta == {"trace": "x", "content-type": "application/json"}
    payload, meta = encode_event("t", b"raw", None, None)
    assert meta["content-type"] == "application/octet-stream"
    payload, meta = encode_event("t", {"a": 1}, None, "application/msgpack")
    event = Event("1", "t", 0.0, meta, payload)
    assert event.decode(dict) == {"a": 1}


def test_bad_payloads() -> None:
    with pytest.raises(PayloadTooLarge):
        encode_event("t", b"x" * (MAX_PAYLOAD + 1), None, None)
    with pytest.raises(BadRequest):
        encode_event("t", object(), None, None)
    with pytest.raises(BadRequest):
        encode_event("t", "x", {"bad key": "v"}, None)
    event = Event("1", "t", 0.0, {"content-type": "application/json"}, b"{nope")
    with pytest.raises(BadRequest):
        event.decode(Order)


def test_dead_letter_metadata_names_the_origin(caplog: pytest.LogCaptureFixture) -> None:
    event = Event("e1", "orders", 1.0, {"k": "v"}, b"{}", deliveries=4)
    meta = dead_metadata(event, "billing", "it\nbroke")
    assert meta == {
        "k": "v",
        "dead-topic": "orders",
        "dead-id": "e1",
        "dead-group": "billing",
        "dead-deliveries": "4",
        "dead-reason": "it broke",
    }
    assert "e1" in caplog.text and "orders.dead" in caplog.text


def test_streams_by_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(from_url("memory"), MemoryEventStream)
    file = from_url(f"file://{tmp_path}/e.db")
    assert isinstance(file, FileEventStream) and file.path == tmp_path / "e.db"
    assert isinstance(from_url("file"), FileEventStream)
    redis = from_url("redis://user:pw@127.0.0.1:6390/2")
    assert isinstance(redis, RedisEventStream) and redis.address == "127.0.0.1:6390/2"
    with pytest.raises(ValueError, match="must be a number"):
        from_url("redis://127.0.0.1:6390/x")
    with pytest.raises(ValueError, match="unknown events"):
        from_url("kafka://x")
    assert resolve_events("memory") is default_events()
    monkeypatch.setenv("MICRO_EVENTS", f"file://{tmp_path}/shared.db")
    assert resolve_events(None) is resolve_events(None)
    given = MemoryEventStream()
    assert resolve_events(given) is given
    with pytest.raises(TypeError, match="events must be"):
        resolve_events(42)  # type: ignore[arg-type]


def test_nats_streams_by_url() -> None:
    from micro.events import JetStreamEventStream

    stream = from_url("nats://127.0.0.1:4333?storage=memory")
    assert isinstance(stream, JetStreamEventStream) and stream.storage == "memory"
    with pytest.raises(ValueError, match="unknown NATS events broker option"):
        from_url("nats://127.0.0.1:4333?confirm=false")
    with pytest.raises(ValueError, match="storage is file or memory"):
        from_url("nats://127.0.0.1:4333?storage=disk")
