"""micro.transport.h2conn's receive path: DATA payloads as views, everything else through h2.

The same recorded client byte stream is fed to fresh server connections in
many chunkings and to h2's own frame buffer; once each stream's DATA pieces
are joined, the events must be the same every time.
"""

import random
from typing import Any

import h2.connection
import h2.events
import h2.exceptions
import hpack
import pytest
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame

from micro.transport.h2conn import MAX_FRAME_SIZE, H2Connection, new_connection, start

from .test_h2_pair import REQUEST, Pair


def record(build: Any) -> bytes:
    """Everything a client sends from its preface on, with ``build(client)`` in between."""
    pair = Pair()
    start(pair.client)
    wire = bytearray(pair.client.data_to_send())
    start(pair.server)
    pair.client.receive_data(pair.server.data_to_send())  # the server's settings
    wire += pair.client.data_to_send()  # their acknowledgement
    build(pair.client)
    wire += pair.client.data_to_send()
    return bytes(wire)


def summary(events: list[Any]) -> list[tuple[Any, ...]]:
    """Events with consecutive DATA of one stream joined into one entry."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        if isinstance(e, h2.events.DataReceived):
            if out and out[-1][0] == "data" and out[-1][1] == e.stream_id:
                _, sid, data, length = out.pop()
                out.append(("data", sid, data + bytes(e.data), length + e.flow_controlled_length))
            else:
                out.append(("data", e.stream_id, bytes(e.data), e.flow_controlled_length))
        else:
            out.append(
                (type(e).__name__, getattr(e, "stream_id", None), getattr(e, "headers", None))
            )
    return out


def feed(wire: bytes, cuts: list[int]) -> tuple[H2Connection, list[Any]]:
    server = new_connection(client_side=False, kind="h2")
    start(server)
    events: list[Any] = []
    last = 0
    for cut in [*cuts, len(wire)]:
        events.extend(server.receive_data(wire[last:cut]))
        last = cut
    return server, events


def reference(wire: bytes) -> list[Any]:
    """The events of h2's own receive path (its frame buffer) for the same bytes."""
    server = new_connection(client_side=False, kind="h2")
    start(server)
    return h2.connection.H2Connection.receive_data(server, wire)


def chunkings(size: int) -> list[list[int]]:
    rng = random.Random(size)
    return [
        [],  # all at once
        list(range(1, size)) if size < 5000 else list(range(1, size, 7)),  # a byte (or 7) at a time
        sorted(rng.sample(range(1, size), min(size - 1, 40))),
        sorted(rng.sample(range(1, size), min(size - 1, 400))),
        list(range(2048, size, 2048)),
    ]


def two_streams(client: H2Connection) -> None:
    a = client.get_next_available_stream_id()
    client.send_headers(a, REQUEST)
    client.send_data(a, bytes(range(256)) * 1200)  # 300 KiB in one frame
    b = client.get_next_available_stream_id()
    client.send_headers(b, REQUEST, end_stream=False)
    client.send_data(b, b"short")
    client.send_data(a, b"", end_stream=True)  # a zero-length frame that ends a stream
    client.send_data(b, b"x" * 70_000, end_stream=True)


def padded(client: H2Connection) -> None:
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, REQUEST)
    client.send_data(sid, b"padded payload" * 100, pad_length=17)
    client.send_data(sid, b"plain", end_stream=True)


def continuation(client: H2Connection) -> None:
    sid = client.get_next_available_stream_id()
    block = hpack.Encoder().encode(REQUEST)
    head = HeadersFrame(sid)
    head.data = block[:10]
    tail = ContinuationFrame(sid, flags=["END_HEADERS"])
    tail.data = block[10:]
    body = DataFrame(sid, flags=["END_STREAM"])
    body.data = b"after a header block"
    client._data_to_send += head.serialize() + tail.serialize() + body.serialize()


@pytest.mark.parametrize("build", [two_streams, padded, continuation])
def test_every_chunking_gives_h2s_own_events(build: Any) -> None:
    wire = record(build)
    expected = summary(reference(wire))
    assert any(e[0] == "data" for e in expected)
    for cuts in chunkings(len(wire)):
        _, events = feed(wire, cuts)
        assert summary(events) == expected, f"{len(cuts)} cuts"


def test_payloads_are_views_of_the_bytes_received() -> None:
    payload = b"z" * 100_000
    wire = record(lambda c: (c.send_headers(1, REQUEST), c.send_data(1, payload, end_stream=True)))
    _, events = feed(wire, [])
    (data,) = [e for e in events if isinstance(e, h2.events.DataReceived)]
    assert isinstance(data.data, memoryview) and data.data.obj is wire  # not a copy
    assert data.data == payload


def test_a_payload_split_across_reads_arrives_in_pieces_that_end_the_stream_once() -> None:
    payload = bytes(range(250)) * 4000  # a frame of nearly 1 MiB
    wire = record(lambda c: (c.send_headers(1, REQUEST), c.send_data(1, payload, end_stream=True)))
    _, events = feed(wire, list(range(256 * 1024, len(wire), 256 * 1024)))
    pieces = [e for e in events if isinstance(e, h2.events.DataReceived)]
    assert len(pieces) > 1
    assert b"".join(bytes(p.data) for p in pieces) == payload
    assert sum(p.flow_controlled_length for p in pieces) == len(payload)
    ended = [e for e in events if isinstance(e, h2.events.StreamEnded)]
    assert len(ended) == 1 and events[-1] is ended[0]
    assert [type(e) for e in events].index(h2.events.StreamEnded) > events.index(pieces[-1])


def test_received_data_is_acknowledged_piece_by_piece() -> None:
    payload = b"w" * 600_000
    wire = record(lambda c: (c.send_headers(1, REQUEST), c.send_data(1, payload)))
    server, events = feed(wire, list(range(100_000, len(wire), 100_000)))
    window = server.remote_flow_control_window(1)  # ours to the client: unaffected
    assert window > 0
    for e in events:
        if isinstance(e, h2.events.DataReceived):
            server.acknowledge_received_data(e.flow_controlled_length, 1)
    assert server._get_stream_by_id(1)._inbound_window_manager.current_window_size > 0
    assert server.data_to_send()  # WINDOW_UPDATEs for what was handed back


def test_an_overlong_frame_is_refused_from_its_header() -> None:
    wire = record(lambda c: c.send_headers(1, REQUEST))
    header = (MAX_FRAME_SIZE + 1).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big")
    server, _ = feed(wire, [])
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        server.receive_data(header)  # no payload has to arrive first
    sent = server.data_to_send()
    assert sent[-17 + 3] == 0x7  # the last frame out is a GOAWAY (9 + 8 bytes)


@pytest.mark.parametrize(
    "frame",
    [
        (5).to_bytes(3, "big") + b"\x00\x00" + (0).to_bytes(4, "big") + b"hello",  # DATA, stream 0
        # DATA in the middle of a header block
        (9).to_bytes(3, "big")
        + b"\x01\x00"
        + (3).to_bytes(4, "big")
        + b"\x82" * 9
        + (5).to_bytes(3, "big")
        + b"\x00\x00"
        + (3).to_bytes(4, "big")
        + b"hello",
    ],
    ids=["stream-0", "inside-a-header-block"],
)
def test_misplaced_data_is_a_protocol_error(frame: bytes) -> None:
    wire = record(lambda c: None)
    for cuts in ([], list(range(1, len(frame)))):
        server, _ = feed(wire, [])
        with pytest.raises(h2.exceptions.ProtocolError):
            last = 0
            for cut in [*cuts, len(frame)]:
                server.receive_data(frame[last:cut])
                last = cut


def test_data_on_a_reset_stream_is_refused_and_the_connection_goes_on() -> None:
    pair = Pair()
    pair.start()
    pair.client.send_headers(1, REQUEST)
    pair.client.send_data(1, b"first")
    pair.to_server()
    pair.server.reset_stream(1)
    pair.to_client()
    late = DataFrame(1)
    late.data = b"q" * 50_000  # sent before the reset reached the client
    pair.server.receive_data(late.serialize())
    assert pair.server.data_to_send()  # RST_STREAM again, and the window handed back
    pair.client.send_headers(3, REQUEST)
    pair.client.send_data(3, b"second", end_stream=True)
    events = summary(pair.to_server())
    assert ("RequestReceived", 3, REQUEST) in events
    assert ("data", 3, b"second", 6) in events
