"""JetStream: stream names for topics, and the metadata in a delivered message's reply subject."""

from __future__ import annotations

import pytest

from micro.errors import BadRequest
from micro.events.nats import stream_name
from micro.nats.jetstream import MessageInfo, message_info


def test_stream_names_are_one_per_topic() -> None:
    assert stream_name("orders") == "EVENTS-orders"
    assert stream_name("orders.created") == "EVENTS-orders_2Ecreated"
    assert stream_name("a_b") == "EVENTS-a_5Fb"
    assert stream_name("ü") == "EVENTS-_C3_BC"
    topics = ["a.b", "a_b", "a_2Eb", "a-b", "a/b", "A.b"]
    assert len({stream_name(t) for t in topics}) == len(topics)
    for topic in topics:
        name = stream_name(topic)
        assert not any(c in name for c in " .*>/\\"), name


def test_reply_subject_metadata() -> None:
    info = message_info("$JS.ACK.S.C.3.17.9.1700000000123456789.4")
    assert info == MessageInfo("S", "C", 3, 17, 9, 1700000000.123456789, 4)
    with_domain = message_info("$JS.ACK.hub.ACC.S.C.2.5.4.1700000000000000000.0.tok")
    assert (with_domain.stream, with_domain.deliveries, with_domain.stream_seq) == ("S", 2, 5)
    for bad in [None, "", "_INBOX.x", "$JS.ACK.S.C.x.1.1.1.1"]:
        with pytest.raises(BadRequest):
            message_info(bad)
