"""micro.transport.h2conn: a client and a server connection wired back to back.

No sockets: each side's ``data_to_send()`` is handed to the other's
``receive_data()`` until neither has anything left to say.
"""

import struct
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import pytest
from h2.settings import SettingCodes

from micro.transport.h2conn import (
    CONNECTION_WINDOW_SIZE,
    MAX_FRAME_SIZE,
    WINDOW_SIZE,
    H2Connection,
    new_connection,
    start,
)

REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/helloworld.Greeter/SayHello"),
    (":authority", "localhost"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
]
RESPONSE = [(":status", "200"), ("content-type", "application/grpc")]


class Pair:
    """A client and a server connection and the events each has received."""

    def __init__(self, **server_options: Any) -> None:
        self.client = new_connection(client_side=True, kind="h2")
        self.server = new_connection(client_side=False, kind="h2", **server_options)
        self.client_events: list[Any] = []
        self.server_events: list[Any] = []

    def start(self) -> None:
        start(self.client)
        start(self.server)
        self.exchange()

    def to_server(self) -> list[Any]:
        events = self.server.receive_data(self.client.data_to_send())
        self.server_events.extend(events)
        return events

    def to_client(self) -> list[Any]:
        events = self.client.receive_data(self.server.data_to_send())
        self.client_events.extend(events)
        return events

    def exchange(self) -> None:
        for _ in range(10):
            if not (self.to_server() or self.to_client()):
                return
        raise AssertionError("the connections never went quiet")

    def server_of(self, kind: type) -> list[Any]:
        return [e for e in self.server_events if isinstance(e, kind)]

    def client_of(self, kind: type) -> list[Any]:
        return [e for e in self.client_events if isinstance(e, kind)]


@pytest.fixture
def pair() -> Pair:
    p = Pair()
    p.start()
    return p


def test_new_connection_is_ours() -> None:
    conn = new_connection(client_side=True, kind="h2")
    assert isinstance(conn, H2Connection)
    assert isinstance(conn, h2.connection.H2Connection)
    assert conn.config.client_side is True
    assert new_connection(client_side=False, kind="h2").config.client_side is False
    assert conn.data_to_send() == b""  # the preamble waits for start()


def test_client_preamble_starts_with_the_http2_preface() -> None:
    conn = new_connection(client_side=True, kind="h2")
    start(conn)
    assert conn.data_to_send().startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")


@pytest.mark.parametrize("side", ["client", "server"])
def test_our_settings_are_advertised(pair: Pair, side: str) -> None:
    ours, peer = (pair.client, pair.server) if side == "client" else (pair.server, pair.client)
    events = pair.server_of if side == "client" else pair.client_of
    changed = events(h2.events.RemoteSettingsChanged)
    assert changed
    seen = {code: c.new_value for e in changed for code, c in e.changed_settings.items()}
    assert seen[SettingCodes.INITIAL_WINDOW_SIZE] == WINDOW_SIZE
    assert seen[SettingCodes.MAX_FRAME_SIZE] == MAX_FRAME_SIZE
    assert peer.remote_settings.initial_window_size == WINDOW_SIZE
    assert peer.remote_settings.max_frame_size == MAX_FRAME_SIZE
    assert peer.max_outbound_frame_size == MAX_FRAME_SIZE
    assert ours.max_inbound_frame_size == MAX_FRAME_SIZE


def test_server_limits_are_advertised() -> None:
    p = Pair(max_concurrent_streams=7, max_header_list_size=4096)
    p.start()
    assert p.client.remote_settings.max_concurrent_streams == 7
    assert p.client.remote_settings.max_header_list_size == 4096
    assert p.client.remote_settings.enable_push == 0


def test_settings_are_acknowledged(pair: Pair) -> None:
    assert pair.client_of(h2.events.SettingsAcknowledged)
    assert pair.server_of(h2.events.SettingsAcknowledged)


def test_connection_window_is_widened(pair: Pair) -> None:
    assert pair.client.outbound_flow_control_window == CONNECTION_WINDOW_SIZE
    assert pair.server.outbound_flow_control_window == CONNECTION_WINDOW_SIZE
    assert CONNECTION_WINDOW_SIZE > WINDOW_SIZE  # a slow stream cannot stall the connection


def test_a_new_stream_gets_the_whole_window(pair: Pair) -> None:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, REQUEST)
    assert pair.client.local_flow_control_window(sid) == WINDOW_SIZE


def test_a_request_and_response(pair: Pair) -> None:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, REQUEST)
    pair.client.send_data(sid, b"\x00\x00\x00\x00\x02hi", end_stream=True)
    pair.exchange()
    (request,) = pair.server_of(h2.events.RequestReceived)
    assert request.headers == REQUEST  # decoded to str
    (data,) = pair.server_of(h2.events.DataReceived)
    assert data.data == b"\x00\x00\x00\x00\x02hi"
    assert pair.server_of(h2.events.StreamEnded)
    pair.server.send_headers(sid, RESPONSE)
    pair.server.send_data(sid, b"\x00\x00\x00\x00\x00")
    pair.server.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    pair.exchange()
    assert pair.client_of(h2.events.ResponseReceived)[0].headers == RESPONSE
    assert pair.client_of(h2.events.TrailersReceived)[0].headers == [("grpc-status", "0")]
    assert pair.client_of(h2.events.StreamEnded)


def test_a_large_data_frame_is_received(pair: Pair) -> None:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, REQUEST)
    payload = bytes(range(256)) * (MAX_FRAME_SIZE // 256) + b"x" * (MAX_FRAME_SIZE % 256)
    assert len(payload) == MAX_FRAME_SIZE
    pair.client.send_data(sid, payload, end_stream=True)
    pair.to_server()
    (data,) = pair.server_of(h2.events.DataReceived)  # one frame, not split
    assert data.data == payload
    assert data.flow_controlled_length == MAX_FRAME_SIZE


def test_a_frame_over_the_limit_is_refused_by_the_sender(pair: Pair) -> None:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, REQUEST)
    with pytest.raises(h2.exceptions.FrameTooLargeError):
        pair.client.send_data(sid, b"x" * (MAX_FRAME_SIZE + 1))


def test_several_large_frames_fit_the_window(pair: Pair) -> None:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, REQUEST)
    for _ in range(WINDOW_SIZE // MAX_FRAME_SIZE):
        pair.client.send_data(sid, b"y" * MAX_FRAME_SIZE)
    pair.to_server()
    received = sum(e.flow_controlled_length for e in pair.server_of(h2.events.DataReceived))
    assert received == (WINDOW_SIZE // MAX_FRAME_SIZE) * MAX_FRAME_SIZE


def test_inbound_headers_stay_validated(pair: Pair) -> None:
    # We skip validating what we send, never what we receive.
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, [*REQUEST, ("x-md", "a\r\nb")])
    with pytest.raises(h2.exceptions.ProtocolError):
        pair.to_server()


# -- GOAWAY -------------------------------------------------------------------


def open_stream(pair: Pair) -> int:
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(sid, REQUEST)
    pair.client.send_data(sid, b"part one")
    pair.exchange()
    return sid


def test_send_goaway_queues_a_frame_and_keeps_the_state_machine_open(pair: Pair) -> None:
    sid = open_stream(pair)
    before = pair.server.state_machine.state
    pair.server.send_goaway(sid)
    assert pair.server.state_machine.state == before
    assert [type(e) for e in pair.to_client()] == [h2.events.ConnectionTerminated]
    # ...and the server can still answer the stream it said it would finish.
    pair.server.send_headers(sid, RESPONSE)
    pair.server.send_data(sid, b"answer")
    pair.server.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    pair.to_client()
    assert pair.client_of(h2.events.ResponseReceived)
    assert pair.client_of(h2.events.StreamEnded)


def test_send_goaway_frame_bytes(pair: Pair) -> None:
    sid = open_stream(pair)
    pair.server.send_goaway(sid, error_code=h2.errors.ErrorCodes.NO_ERROR)
    # length 8, type GOAWAY (7), no flags, stream 0; last stream id; error code
    header = b"\x00\x00\x08\x07\x00\x00\x00\x00\x00"
    assert pair.server.data_to_send() == header + struct.pack(">II", sid, 0)


def test_received_goaway_is_a_connection_terminated_event(pair: Pair) -> None:
    sid = open_stream(pair)
    pair.server.send_goaway(sid, error_code=h2.errors.ErrorCodes.NO_ERROR)
    (event,) = pair.to_client()
    assert isinstance(event, h2.events.ConnectionTerminated)
    assert event.error_code == h2.errors.ErrorCodes.NO_ERROR
    assert event.last_stream_id == sid
    assert event.additional_data is None


def test_received_goaway_error_code(pair: Pair) -> None:
    pair.server.send_goaway(0, error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
    (event,) = pair.to_client()
    assert event.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
    assert event.last_stream_id == 0


def test_after_a_received_goaway_open_streams_can_finish(pair: Pair) -> None:
    sid = open_stream(pair)
    pair.server.send_goaway(sid)
    pair.to_client()
    assert pair.client_of(h2.events.ConnectionTerminated)
    # Plain h2 closes its state machine here and refuses to send; ours does not.
    pair.client.send_data(sid, b"part two")
    pair.client.send_headers(sid, [("x-late", "1")], end_stream=True)
    pair.to_server()
    assert [e.data for e in pair.server_of(h2.events.DataReceived)] == [b"part one", b"part two"]
    assert pair.server_of(h2.events.TrailersReceived)
    assert pair.server_of(h2.events.StreamEnded)
    pair.server.send_headers(sid, RESPONSE)
    pair.server.send_headers(sid, [("grpc-status", "0")], end_stream=True)
    pair.to_client()
    assert pair.client_of(h2.events.TrailersReceived)[0].headers == [("grpc-status", "0")]


def test_plain_h2_would_refuse_after_goaway() -> None:
    # The behaviour the override exists to change, shown on an unmodified h2.
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    client.send_headers(1, REQUEST)
    server.receive_data(client.data_to_send())
    server.close_connection(last_stream_id=1)
    client.receive_data(server.data_to_send())
    with pytest.raises(h2.exceptions.ProtocolError):
        client.send_data(1, b"late")
