"""micro.transport.http2: RFC 9113 behaviour of our own connection, in both roles."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import h2.config
import h2.connection
import h2.events
import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from micro.transport import http2
from micro.transport.h2conn import ProtocolError, new_connection, start

from .test_http2_diff import PREFACE, REQUEST, both, frame, frames_of, outcome, summary

GRPC_REQUEST = [*REQUEST, ("content-type", "application/grpc"), ("te", "trailers")]


def server() -> http2.Connection:
    conn = http2.Connection(client_side=False, max_concurrent_streams=10)
    conn.initiate_connection()
    conn.receive_data(PREFACE)
    conn.data_to_send()
    return conn


def block(headers: list[tuple[str, str]]) -> bytes:
    return hpack.Encoder().encode(headers)


def h2_client() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    )
    conn.initiate_connection()
    return conn


def pair() -> tuple[http2.Connection, http2.Connection]:
    client = http2.Connection(client_side=True)
    srv = http2.Connection(client_side=False)
    client.initiate_connection()
    srv.initiate_connection()
    srv.receive_data(bytes(client.data_to_send()))
    client.receive_data(bytes(srv.data_to_send()))
    srv.receive_data(bytes(client.data_to_send()))
    return client, srv


@pytest.mark.parametrize(
    "headers",
    [
        [*REQUEST, ("X-Upper", "1")],
        [*REQUEST, ("connection", "close")],
        [*REQUEST, ("te", "gzip")],
        [*REQUEST, ("x-a", " padded")],
        [*REQUEST, ("x-a", "a\nb")],
        [(":method", "POST"), ("x-a", "1"), (":path", "/"), (":scheme", "http")],
        [(":method", "POST"), (":scheme", "http")],  # no :path
        [(":method", "POST"), (":scheme", "http"), (":path", "")],
        [*REQUEST, (":method", "GET")],  # repeated pseudo-header
        [*REQUEST, (":status", "200")],  # a response's pseudo-header
        [*REQUEST, ("host", "other")],  # :authority is x
        [(":method", "CONNECT"), (":path", "/"), (":authority", "x")],
    ],
)
def test_a_malformed_request_resets_only_its_stream(headers: list[tuple[str, str]]) -> None:
    conn = server()
    events = conn.receive_data(
        frame(0x1, 0x5, 1, block(headers)) + frame(0x1, 0x5, 3, block(REQUEST))
    )
    assert [type(e).__name__ for e in events] == [
        "StreamReset",
        "RequestReceived",
        "StreamEnded",
    ]
    assert events[0].stream_id == 1 and events[0].remote_reset is False
    assert events[1].stream_id == 3
    sent = frames_of(bytes(conn.data_to_send()))
    assert (0x3, 1, (1).to_bytes(4, "big")) in [(t, s, p) for t, _, s, p in sent]
    # h2 refuses the same request too (with a connection error).
    theirs = new_connection(client_side=False, kind="h2")
    start(theirs)
    with pytest.raises(ProtocolError) as raised:
        theirs.receive_data(PREFACE + frame(0x1, 0x5, 1, block(headers)))
    assert raised.value.error_code == http2.ErrorCodes.PROTOCOL_ERROR


def test_cookies_are_joined_and_te_trailers_is_allowed() -> None:
    conn = server()
    headers = [*GRPC_REQUEST, ("cookie", "a=1"), ("cookie", "b=2")]
    (request, _) = conn.receive_data(frame(0x1, 0x5, 1, block(headers)))
    assert ("cookie", "a=1; b=2") in request.headers
    assert ("te", "trailers") in request.headers


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (frame(0x0, 0x1, 0, b"x"), http2.ErrorCodes.PROTOCOL_ERROR),  # DATA on stream 0
        (frame(0x0, 0x1, 9, b"x"), http2.ErrorCodes.PROTOCOL_ERROR),  # DATA on an idle stream
        (frame(0x1, 0x5, 2, block(REQUEST)), http2.ErrorCodes.PROTOCOL_ERROR),  # even id
        (frame(0x4, 0, 1), http2.ErrorCodes.PROTOCOL_ERROR),  # SETTINGS on a stream
        (frame(0x4, 0, 0, b"\x00\x05\x00\x00\x00\x01"), http2.ErrorCodes.PROTOCOL_ERROR),
        (frame(0x4, 0, 0, b"\x00\x04\x80\x00\x00\x00"), http2.ErrorCodes.FLOW_CONTROL_ERROR),
        (frame(0x4, 0, 0, b"\x00\x02\x00\x00\x00\x02"), http2.ErrorCodes.PROTOCOL_ERROR),
        (frame(0x4, 0, 0, b"\x00"), http2.ErrorCodes.FRAME_SIZE_ERROR),
        (frame(0x4, 1, 0, b"\x00"), http2.ErrorCodes.FRAME_SIZE_ERROR),
        (frame(0x6, 0, 0, b"1234"), http2.ErrorCodes.FRAME_SIZE_ERROR),
        (frame(0x6, 0, 1, b"12345678"), http2.ErrorCodes.PROTOCOL_ERROR),
        (frame(0x8, 0, 0, b"\x00\x00\x00\x00"), http2.ErrorCodes.PROTOCOL_ERROR),
        (frame(0x8, 0, 0, b"\x7f\xff\xff\xff"), http2.ErrorCodes.FLOW_CONTROL_ERROR),
        (frame(0x8, 0, 0, b"\x00\x01"), http2.ErrorCodes.FRAME_SIZE_ERROR),
        (frame(0x3, 0, 0, b"\x00\x00\x00\x00"), http2.ErrorCodes.PROTOCOL_ERROR),
        (frame(0x3, 0, 1, b"\x00\x00"), http2.ErrorCodes.FRAME_SIZE_ERROR),
        (frame(0x2, 0, 1, b"\x00"), http2.ErrorCodes.FRAME_SIZE_ERROR),
        (frame(0x7, 0, 1, bytes(8)), http2.ErrorCodes.PROTOCOL_ERROR),
        (frame(0x5, 0x4, 1, bytes(4)), http2.ErrorCodes.PROTOCOL_ERROR),  # push is off
        (frame(0x9, 0x4, 1, b""), http2.ErrorCodes.PROTOCOL_ERROR),  # CONTINUATION alone
        (frame(0x1, 0x1, 1, block(REQUEST)) + frame(0x6, 0, 0, bytes(8)), 1),  # no CONTINUATION
        (frame(0x1, 0x5, 1, b"\x80"), http2.ErrorCodes.COMPRESSION_ERROR),
        (frame(0x1, 0xD, 1, b"\xff" + block(REQUEST)), http2.ErrorCodes.PROTOCOL_ERROR),  # pad
        (b"\x01\x00\x00\x00\x00\x00\x00\x00\x01", http2.ErrorCodes.FRAME_SIZE_ERROR),  # 64 KiB
    ],
)
def test_connection_errors_queue_goaway_with_the_rfcs_code(wire: bytes, code: int) -> None:
    conn = server()
    with pytest.raises(http2.ProtocolError) as raised:
        conn.receive_data(wire)
    assert raised.value.error_code == code
    goaway = [p for t, _, _, p in frames_of(bytes(conn.data_to_send())) if t == 0x7]
    assert [int.from_bytes(p[4:8], "big") for p in goaway] == [code]
    with pytest.raises(http2.ProtocolError):
        conn.receive_data(frame(0x6, 0, 0, bytes(8)))  # nothing more is received


def test_the_preface_and_first_settings_are_checked() -> None:
    conn = http2.Connection(client_side=False)
    with pytest.raises(http2.ProtocolError):
        conn.receive_data(b"GET / HTTP/1.1\r\n\r\n")
    conn = http2.Connection(client_side=False)
    with pytest.raises(http2.ProtocolError):
        conn.receive_data(http2.PREFACE + frame(0x6, 0, 0, bytes(8)))


def test_a_stream_over_the_concurrency_limit_ends_the_connection() -> None:
    conn = server()
    wire = b"".join(frame(0x1, 0x4, sid, block(REQUEST)) for sid in range(1, 22, 2))
    with pytest.raises(http2.ProtocolError):
        conn.receive_data(wire)


def test_flow_control_windows_follow_settings_and_updates() -> None:
    client, srv = pair()
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, GRPC_REQUEST)
    srv.receive_data(bytes(client.data_to_send()))
    assert client.local_flow_control_window(sid) == 65535
    with pytest.raises(http2.FlowControlError):
        client.send_data(sid, bytes(65536))
    with pytest.raises(http2.H2Error):
        client.send_data(sid, bytes(16385))  # over the peer's frame size
    client.send_data(sid, bytes(16384))
    client.send_data(sid, bytes(16384))
    assert client.local_flow_control_window(sid) == 65535 - 32768
    # The server grants a larger initial window: open streams grow by the difference.
    srv.update_settings({http2.SettingCodes.INITIAL_WINDOW_SIZE: 100000})
    events = client.receive_data(bytes(srv.data_to_send()))
    assert isinstance(events[0], http2.RemoteSettingsChanged)
    assert client.streams[sid].out_window == 65535 - 32768 + (100000 - 65535)
    assert client.local_flow_control_window(sid) == 65535 - 32768  # the connection's is smaller
    events = srv.receive_data(bytes(client.data_to_send()))
    names = [type(e).__name__ for e in events]
    assert names == ["DataReceived", "DataReceived", "SettingsAcknowledged"]
    assert srv.local_settings.initial_window_size == 100000
    for e in events[:2]:
        srv.acknowledge_received_data(e.flow_controlled_length, sid)
    # Half the connection's window is back: one WINDOW_UPDATE gives it back.
    (update,) = client.receive_data(bytes(srv.data_to_send()))
    assert (update.stream_id, update.delta) == (0, 32768)
    assert client.local_flow_control_window(sid) == 65535


def test_data_past_the_window_is_a_flow_control_error() -> None:
    conn = server()
    conn.receive_data(frame(0x1, 0x4, 1, block(GRPC_REQUEST)))
    with pytest.raises(http2.ProtocolError) as raised:
        conn.receive_data(b"".join(frame(0x0, 0, 1, bytes(16384)) for _ in range(4)))
    assert raised.value.error_code == http2.ErrorCodes.FLOW_CONTROL_ERROR


def test_large_headers_go_out_with_continuation_frames() -> None:
    client, srv = pair()
    big = [*GRPC_REQUEST, ("x-big", "v" * 40000)]
    client.send_headers(1, big, end_stream=True)
    wire = bytes(client.data_to_send())
    assert [t for t, _, _, _ in frames_of(wire)] == [0x1, 0x9, 0x9]
    events = srv.receive_data(wire)
    assert events[0].headers == big
    theirs = new_connection(client_side=False, kind="h2")
    start(theirs)
    theirs.receive_data(PREFACE)
    assert list(theirs.receive_data(wire)[0].headers) == big


def test_a_round_trip_ends_and_forgets_both_streams() -> None:
    client, srv = pair()
    sid = client.get_next_available_stream_id()
    client.send_headers(sid, GRPC_REQUEST)
    client.send_data(sid, b"\x00\x00\x00\x00\x01x", end_stream=True)
    events = srv.receive_data(bytes(client.data_to_send()))
    assert [type(e).__name__ for e in events] == ["RequestReceived", "DataReceived", "StreamEnded"]
    assert bytes(events[1].data) == b"\x00\x00\x00\x00\x01x"
    srv.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
    srv.send_data(sid, b"\x00\x00\x00\x00\x01y", pad_length=3)
    srv.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    events = client.receive_data(bytes(srv.data_to_send()))
    assert [type(e).__name__ for e in events] == [
        "ResponseReceived",
        "DataReceived",
        "TrailersReceived",
        "StreamEnded",
    ]
    assert bytes(events[1].data) == b"\x00\x00\x00\x00\x01y"
    assert events[1].flow_controlled_length == 10
    assert not client.streams and not srv.streams
    with pytest.raises(http2.StreamClosedError):
        srv.send_data(sid, b"late")
    assert client.get_next_available_stream_id() == sid + 2


def test_a_cancelled_call_is_a_stream_reset_on_the_other_side() -> None:
    client, srv = pair()
    client.send_headers(1, GRPC_REQUEST)
    srv.receive_data(bytes(client.data_to_send()))
    client.reset_stream(1, http2.ErrorCodes.CANCEL)
    (reset,) = srv.receive_data(bytes(client.data_to_send()))
    assert isinstance(reset, http2.StreamReset)
    assert (reset.stream_id, reset.error_code, reset.remote_reset) == (1, 8, True)
    # DATA still in flight on the reset stream is dropped, its window given back.
    assert client.receive_data(frame(0x0, 0, 1, bytes(16000)) * 2) == []
    assert frames_of(bytes(client.data_to_send())) == []  # not yet half a window
    client.receive_data(frame(0x0, 0, 1, bytes(16000)))
    assert [t for t, _, _, _ in frames_of(bytes(client.data_to_send()))] == [0x8]


def test_ping_settings_and_goaway() -> None:
    client, srv = pair()
    client.ping(b"abcdefgh")
    (ping,) = srv.receive_data(bytes(client.data_to_send()))
    assert isinstance(ping, http2.PingReceived) and ping.ping_data == b"abcdefgh"
    (ack,) = client.receive_data(bytes(srv.data_to_send()))
    assert isinstance(ack, http2.PingAckReceived) and ack.ping_data == b"abcdefgh"
    srv.send_goaway(7, http2.ErrorCodes.NO_ERROR, b"bye")
    (gone,) = client.receive_data(bytes(srv.data_to_send()))
    assert isinstance(gone, http2.ConnectionTerminated)
    assert (gone.error_code, gone.last_stream_id, gone.additional_data) == (0, 7, b"bye")


def test_received_data_arrives_as_views_and_in_pieces() -> None:
    conn = server()
    wire = frame(0x1, 0x4, 1, block(GRPC_REQUEST)) + frame(0x0, 0x1, 1, bytes(range(200)))
    cut = len(wire) - 150
    events = conn.receive_data(wire[:cut])
    assert conn.pending_frame_bytes() == 150
    events += conn.receive_data(wire[cut:])
    pieces = [e for e in events if isinstance(e, http2.DataReceived)]
    assert all(isinstance(p.data, memoryview) for p in pieces)
    assert b"".join(bytes(p.data) for p in pieces) == bytes(range(200))
    assert sum(p.flow_controlled_length for p in pieces) == 200
    assert [p.stream_ended is not None for p in pieces] == [False, True]
    assert isinstance(events[-1], http2.StreamEnded)


def test_content_length_must_match_the_body() -> None:
    conn = server()
    headers = [*REQUEST, ("content-length", "3")]
    events = conn.receive_data(frame(0x1, 0x4, 1, block(headers)) + frame(0x0, 0x1, 1, b"toolong"))
    assert [type(e).__name__ for e in events] == ["RequestReceived", "StreamReset"]
    assert events[1].error_code == http2.ErrorCodes.PROTOCOL_ERROR


def test_a_response_without_status_is_malformed() -> None:
    client, _ = pair()
    client.send_headers(1, GRPC_REQUEST, end_stream=True)
    client.data_to_send()
    events = client.receive_data(frame(0x1, 0x5, 1, block([("grpc-status", "0")])))
    assert [type(e).__name__ for e in events] == ["StreamReset"]


def test_informational_responses_come_before_the_response() -> None:
    client, srv = pair()
    client.send_headers(1, GRPC_REQUEST, end_stream=True)
    srv.receive_data(bytes(client.data_to_send()))
    srv.send_headers(1, [(":status", "100")])
    srv.send_headers(1, [(":status", "200")], end_stream=True)
    events = client.receive_data(bytes(srv.data_to_send()))
    assert [type(e).__name__ for e in events] == [
        "InformationalResponseReceived",
        "ResponseReceived",
        "StreamEnded",
    ]


def test_our_client_talks_to_h2s_server() -> None:
    client = http2.Connection(client_side=True)
    client.initiate_connection()
    theirs = new_connection(client_side=False, kind="h2")
    start(theirs)
    theirs.receive_data(bytes(client.data_to_send()))
    client.receive_data(bytes(theirs.data_to_send()))
    client.send_headers(1, GRPC_REQUEST)
    client.send_data(1, b"hello", end_stream=True)
    events = theirs.receive_data(bytes(client.data_to_send()))
    events = [e for e in events if not isinstance(e, h2.events.SettingsAcknowledged)]
    assert isinstance(events[0], h2.events.RequestReceived)
    assert list(events[0].headers) == GRPC_REQUEST
    theirs.send_headers(1, [(":status", "200")])
    theirs.send_data(1, b"world")
    theirs.send_headers(1, [("grpc-status", "0")], end_stream=True)
    events = client.receive_data(bytes(theirs.data_to_send()))
    assert summary(events) == [
        ("ResponseReceived", 1, [(":status", "200")]),
        ("data", 1, b"world", 5),
        ("TrailersReceived", 1, [("grpc-status", "0")]),
        ("StreamEnded", 1),
    ]


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_chunking_gives_the_same_events(rnd: random.Random) -> None:
    wire = PREFACE + b"".join(
        frame(0x1, 0x4, sid, block(GRPC_REQUEST))
        + frame(0x0, 0, sid, bytes(rnd.randrange(0, 3000)))
        + frame(0x0, 0x9, sid, b"\x02abc\x00\x00")
        for sid in (1, 3, 5)
    )
    reference = outcome(new_connection(client_side=False, kind="micro"), [wire])
    points = sorted(rnd.sample(range(1, len(wire)), 12))
    chunks = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    ours, theirs = both(client_side=False)
    assert outcome(ours, chunks)["events"] == reference["events"]
    assert outcome(theirs, chunks)["events"] == reference["events"]


def test_events_carry_h2s_attribute_names() -> None:
    event: Any
    for event in (
        http2.RequestReceived(1, []),
        http2.DataReceived(1, b"", 0),
        http2.StreamReset(1, 0),
        http2.WindowUpdated(0, 1),
        http2.ConnectionTerminated(0, 0, None),
    ):
        name = type(event).__name__
        theirs = getattr(h2.events, name)
        fields = (
            {f.name for f in dataclasses.fields(theirs)}
            if dataclasses.is_dataclass(theirs)
            else set(vars(theirs()))
        )
        # Its public attributes (a compiled build keeps no __slots__ to read them from).
        assert {n for n in dir(event) if not n.startswith("_")} == fields, name


def test_codes_come_out_as_their_enum_members() -> None:
    # As h2 gives them, so that drivers can name them; a compiled build must not make them ints.
    client, srv = pair()
    settings_changed = [
        e
        for e in srv.receive_data(bytes(client.data_to_send()))
        if isinstance(e, http2.RemoteSettingsChanged)
    ]
    client.update_settings({http2.SettingCodes.INITIAL_WINDOW_SIZE: 100000})
    (changed,) = srv.receive_data(bytes(client.data_to_send()))
    client.send_headers(1, GRPC_REQUEST)
    srv.receive_data(bytes(client.data_to_send()))
    client.reset_stream(1, 8)
    (reset,) = srv.receive_data(bytes(client.data_to_send()))
    srv.close_connection(11)
    (terminated,) = [
        e
        for e in client.receive_data(bytes(srv.data_to_send()))
        if isinstance(e, http2.ConnectionTerminated)
    ]
    assert type(reset.error_code) is http2.ErrorCodes
    assert reset.error_code is http2.ErrorCodes.CANCEL
    assert terminated.error_code is http2.ErrorCodes.ENHANCE_YOUR_CALM
    assert http2.StreamReset(1, 0xFFFF).error_code == 0xFFFF  # a code ErrorCodes does not name
    for event in [*settings_changed, changed]:
        for code, setting in event.changed_settings.items():
            assert type(code) is http2.SettingCodes
            assert setting.setting is code
    assert all(type(code) is http2.SettingCodes for code, _ in srv.local_settings.items())
    with pytest.raises(http2.ProtocolError) as raised:
        server().receive_data(frame(0x3, 0, 0, bytes(4)))  # RST_STREAM on stream 0
    assert raised.value.error_code is http2.ErrorCodes.PROTOCOL_ERROR


def test_a_stream_reset_while_its_data_arrives_gets_no_more_of_it() -> None:
    conn = server()
    wire = frame(0x1, 0x4, 1, block(GRPC_REQUEST)) + frame(0x0, 0x1, 1, bytes(1000))
    events = conn.receive_data(wire[:-600])
    assert [type(e).__name__ for e in events] == ["RequestReceived", "DataReceived"]
    conn.reset_stream(1, http2.ErrorCodes.CANCEL)
    assert conn.receive_data(wire[-600:]) == []
    assert conn.pending_frame_bytes() == 0


def test_micro_http2_chooses_the_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MICRO_HTTP2", raising=False)
    assert isinstance(new_connection(client_side=True), http2.Connection)
    monkeypatch.setenv("MICRO_HTTP2", "h2")
    assert isinstance(new_connection(client_side=True), h2.connection.H2Connection)
    monkeypatch.setenv("MICRO_HTTP2", " Micro ")
    assert isinstance(new_connection(client_side=True), http2.Connection)
    monkeypatch.setenv("MICRO_HTTP2", "nghttp2")
    with pytest.raises(ValueError, match="MICRO_HTTP2 must be one of micro, h2"):
        new_connection(client_side=True)


def test_a_malformed_head_seen_again_is_refused_again() -> None:
    """Verdicts on header lists are remembered: a bad one stays bad, a good one good."""
    bad = [*REQUEST, ("connection", "close")]
    for _ in range(2):
        conn = server()
        events = conn.receive_data(
            frame(0x1, 0x5, 1, block(bad)) + frame(0x1, 0x5, 3, block(REQUEST))
        )
        assert [type(e).__name__ for e in events] == [
            "StreamReset",
            "RequestReceived",
            "StreamEnded",
        ]


def test_trailers_on_a_stream_that_depends_on_itself_reset_that_stream() -> None:
    """RFC 9113 section 5.3.1: a stream cannot depend on itself (a stream error)."""
    conn = server()
    priority = (1).to_bytes(4, "big") + b"\x0f"
    trailers = frame(0x1, 0x25, 1, priority + block([("grpc-status", "0")]))
    events = conn.receive_data(frame(0x1, 0x4, 1, block(REQUEST)) + trailers)
    assert [type(e).__name__ for e in events] == ["RequestReceived", "StreamReset"]
    sent = frames_of(bytes(conn.data_to_send()))
    assert (0x3, 1, (1).to_bytes(4, "big")) in [(t, s, p) for t, _, s, p in sent]
