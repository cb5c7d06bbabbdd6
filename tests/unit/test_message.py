"""The published-message record: built fast, still an immutable dataclass."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from micro.message import Message, decode, encode, new_message_id


def test_defaults_and_fields() -> None:
    message = Message("orders.created", b"{}")
    assert message.topic == "orders.created"
    assert message.body == b"{}"
    assert message.headers == {}
    assert len(message.id) == 32 and int(message.id, 16) >= 0
    named = Message(topic="t", body=b"x", headers={"a": "b"}, id="m-1")
    assert (named.topic, named.body, named.headers, named.id) == ("t", b"x", {"a": "b"}, "m-1")


def test_ids_are_unique_hex() -> None:
    ids = {new_message_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and i == i.lower() and int(i, 16) >= 0 for i in ids)
    assert Message("t", b"").id != Message("t", b"").id


def test_a_message_is_frozen() -> None:
    message = Message("t", b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.topic = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.id = "other"  # type: ignore[misc]


def test_equality_replace_repr_and_pickle() -> None:
    message = Message("t", b"x", {"content-type": "application/json"}, "id-1")
    assert message == Message("t", b"x", {"content-type": "application/json"}, "id-1")
    assert message != Message("t", b"x", {}, "id-1")
    moved = dataclasses.replace(message, topic="u")
    assert (moved.topic, moved.id, moved.headers) == ("u", "id-1", message.headers)
    assert "id-1" in repr(message)
    assert pickle.loads(pickle.dumps(message)) == message
    assert [f.name for f in dataclasses.fields(Message)] == ["topic", "body", "headers", "id"]


def test_encode_carries_the_content_type() -> None:
    message = encode("t", {"n": 1}, headers={"Trace": "x"})
    assert message.headers == {"trace": "x", "content-type": "application/json"}
    assert encode("t", b"raw").headers["content-type"] == "application/octet-stream"


def test_decode_reads_a_message_and_an_event_alike() -> None:
    from dataclasses import dataclass

    from micro.errors import BadRequest
    from micro.events import Event

    @dataclass
    class Order:
        id: int

    message = encode("orders", Order(7))
    assert decode(message.headers, message.body, Order) == Order(7)
    event = Event("e1", "orders", 0.0, dict(message.headers), message.body)
    assert event.decode(Order) == decode(message.headers, message.body, Order)
    assert decode({}, b'{"id": 8}', Order) == Order(8)  # JSON when no content type
    assert decode({"content-type": "application/octet-stream"}, b"\x00", bytes) == b"\x00"
    with pytest.raises(BadRequest):
        decode({}, b"not json", Order)
