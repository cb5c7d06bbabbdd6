"""The mDNS registry's TXT record: a node's record in 255-byte strings, and back."""

from __future__ import annotations

import json
import zlib

import pytest

from micro.registry._mdns_txt import MAX_RECORD_BYTES, decode_txt, encode_txt, txt_strings
from micro.registry.base import EndpointInfo, Node, ServiceRecord

NODE = Node(id="node-ü-1", address="10.0.0.5:8080", metadata={"zone": "a"})
RECORD = ServiceRecord(
    name="greeter",
    version="1.2",
    metadata={"team": "x"},
    endpoints=tuple(
        EndpointInfo(
            f"Greeter.Call{i}", {"type": "object", "title": "x" * 50}, {}, {"kind": "unary"}
        )
        for i in range(40)
    ),
    nodes=(NODE,),
)


def _strings(*items: bytes) -> bytes:
    return b"".join(bytes((len(s),)) + s for s in items)


def test_a_record_round_trips_through_strings_of_at_most_255_bytes() -> None:
    txt = encode_txt(RECORD, NODE)
    strings = txt_strings(txt)
    assert strings[b"micro"] == b"1"
    assert int(strings[b"n"]) > 1  # this record needs several strings
    position = 0
    while position < len(txt):
        assert txt[position] <= 255
        position += 1 + txt[position]
    assert decode_txt(txt) == RECORD


def test_a_txt_record_of_something_else_is_none() -> None:
    assert decode_txt(b"") is None
    assert decode_txt(_strings(b"path=/", b"micro=2")) is None


def test_the_first_of_a_repeated_key_wins() -> None:
    assert txt_strings(_strings(b"a=1", b"a=2", b"flag")) == {b"a": b"1", b"flag": b""}


def test_an_unreadable_record_raises() -> None:
    with pytest.raises(KeyError):
        decode_txt(_strings(b"micro=1", b"n=2", b"0=abc"))
    with pytest.raises(zlib.error):
        decode_txt(_strings(b"micro=1", b"n=1", b"0=not zlib"))


def test_a_record_that_inflates_too_far_is_refused() -> None:
    bomb = zlib.compress(json.dumps({"name": " " * (MAX_RECORD_BYTES + 1)}).encode(), 9)
    strings = [b"micro=1"]
    chunks = [f"{i}=".encode() + bomb[p : p + 250] for i, p in enumerate(range(0, len(bomb), 250))]
    strings.append(f"n={len(chunks)}".encode())
    with pytest.raises(ValueError, match="too large"):
        decode_txt(_strings(*strings, *chunks))
