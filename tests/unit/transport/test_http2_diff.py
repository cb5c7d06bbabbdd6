"""micro.transport.http2 against h2: the same bytes in; the same events, errors and GOAWAYs out.

Byte streams recorded from real peers (grpcio, curl, h2load, httpx; see
``data/record.py``) are replayed to both implementations, in both roles and
in many chunkings, and hypothesis generates frame sequences (malformed ones
included) for both roles. Known, deliberate differences are normalised
in one place, :func:`outcome`, each with its reason.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import h2.events
import hpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micro.transport import http2
from micro.transport.h2conn import ProtocolError, new_connection, start

DATA = Path(__file__).parent / "data"
# Recorded against a micro service on h2, and (``-micro``) on micro's own core.
PEERS = [
    f"{peer}{server}" for server in ("", "-micro") for peer in ("grpcio", "curl", "h2load", "httpx")
]
_HEADER = struct.Struct(">HBBBL")


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    size = len(payload)
    return _HEADER.pack(size >> 8, size & 0xFF, ftype, flags, sid) + payload


def frames_of(wire: bytes) -> list[tuple[int, int, int, bytes]]:
    out = []
    pos = 0
    while pos + 9 <= len(wire):
        hi, lo, ftype, flags, sid = _HEADER.unpack_from(wire, pos)
        size = hi << 8 | lo
        out.append((ftype, flags, sid & 0x7FFFFFFF, wire[pos + 9 : pos + 9 + size]))
        pos += 9 + size
    return out


def summary(events: list[Any]) -> list[tuple[Any, ...]]:
    """Events as comparable tuples; consecutive DATA pieces of a stream joined."""
    out: list[tuple[Any, ...]] = []
    for e in events:
        name = type(e).__name__
        if name in ("PriorityUpdated", "UnknownFrameReceived"):
            continue  # priorities are parsed and ignored; unknown frames are ignored
        if name == "DataReceived":
            if out and out[-1][0] == "data" and out[-1][1] == e.stream_id:
                _, sid, data, length = out.pop()
                out.append(("data", sid, data + bytes(e.data), length + e.flow_controlled_length))
            else:
                out.append(("data", e.stream_id, bytes(e.data), e.flow_controlled_length))
        elif hasattr(e, "headers"):
            out.append((name, e.stream_id, [tuple(h) for h in e.headers]))
        elif name == "StreamReset":
            out.append((name, e.stream_id, int(e.error_code)))
        elif name == "WindowUpdated":
            out.append((name, e.stream_id, e.delta))
        elif name == "RemoteSettingsChanged":
            known = {int(c) for c in http2.SettingCodes}
            out.append(
                (name, {int(k): v.new_value for k, v in e.changed_settings.items() if k in known})
            )
        elif name in ("PingReceived", "PingAckReceived"):
            out.append((name, bytes(e.ping_data)))
        elif name == "ConnectionTerminated":
            out.append((name, int(e.error_code), e.last_stream_id, e.additional_data))
        else:
            out.append((name, getattr(e, "stream_id", None)))
    return out


def outcome(conn: Any, chunks: list[bytes]) -> dict[str, Any]:
    """What a connection makes of ``chunks``: events, the error raised, frames sent."""
    events: list[Any] = []
    error = None
    why = ""
    for chunk in chunks:
        try:
            events.extend(conn.receive_data(chunk))
        except ProtocolError as exc:
            error = int(exc.error_code)
            why = str(exc)
            break
    sent = frames_of(bytes(conn.data_to_send()))
    return {
        "events": summary(events),
        "error": error,
        "goaway": [int.from_bytes(p[4:8], "big") for t, _, _, p in sent if t == 0x7],
        "resets": sorted((sid, int.from_bytes(p, "big")) for t, _, sid, p in sent if t == 0x3),
        "acks": [(t, p) for t, f, _, p in sent if t in (0x4, 0x6) and f & 1],
        "why": why,
    }


def both(client_side: bool) -> tuple[Any, Any]:
    ours = new_connection(client_side=client_side, kind="micro")
    theirs = new_connection(client_side=client_side, kind="h2")
    for conn in (ours, theirs):
        start(conn)
        conn.data_to_send()
    return ours, theirs


def cuts(wire: bytes, rng: random.Random, n: int) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(wire)), min(n, len(wire) - 1)))
    return [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]


# -- recorded peers ------------------------------------------------------------


@pytest.mark.parametrize("peer", PEERS)
def test_server_role_agrees_on_recorded_clients(peer: str) -> None:
    wire = (DATA / f"{peer}.c2s").read_bytes()
    rng = random.Random(peer)
    for chunking in [[wire], *(cuts(wire, rng, n) for n in (3, 40, 400))]:
        ours, theirs = both(client_side=False)
        mine = outcome(ours, chunking)
        assert mine == outcome(theirs, chunking)
        assert any(e[0] == "RequestReceived" for e in mine["events"])


def _requests(wire: bytes) -> list[tuple[int, list[tuple[str, str]]]]:
    server = new_connection(client_side=False, kind="h2")
    start(server)
    return [
        (e.stream_id, list(e.headers))
        for e in server.receive_data(wire)
        if isinstance(e, h2.events.RequestReceived)
    ]


@pytest.mark.parametrize("peer", PEERS)
def test_client_role_agrees_on_recorded_servers(peer: str) -> None:
    requests = _requests((DATA / f"{peer}.c2s").read_bytes())
    wire = (DATA / f"{peer}.s2c").read_bytes()
    rng = random.Random(peer)
    for chunking in [[wire], *(cuts(wire, rng, n) for n in (3, 40, 400))]:
        ours, theirs = both(client_side=True)
        for conn in (ours, theirs):
            for sid, headers in requests:
                assert conn.get_next_available_stream_id() == sid
                conn.send_headers(sid, headers, end_stream=True)
            conn.data_to_send()
        mine = outcome(ours, chunking)
        assert mine == outcome(theirs, chunking)
        assert any(e[0] == "TrailersReceived" or e[0] == "StreamEnded" for e in mine["events"])


# -- generated frame sequences -------------------------------------------------

PREFACE = http2.PREFACE + frame(0x4, 0, 0)
_ENC = hpack.Encoder()
REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/a/B"), (":authority", "x")]
TRAILERS = [("grpc-status", "0")]
_SIDS = st.sampled_from([1, 1, 3, 3, 5, 7, 2, 0])


@st.composite
def headers_frames(draw: Any) -> bytes:
    sid = draw(_SIDS)
    headers = [*REQUEST, ("content-type", "application/grpc")]
    if draw(st.booleans()):
        headers = TRAILERS
    block = hpack.Encoder().encode(headers)
    end = 0x1 if draw(st.booleans()) else 0
    flags = end
    payload = block
    if draw(st.booleans()):
        pad = draw(st.integers(0, 10))
        payload = bytes([pad]) + payload + bytes(pad)
        flags |= 0x8
    if draw(st.booleans()):
        dep = draw(st.sampled_from([0, 1, 3, 9]))
        payload = struct.pack(">LB", dep, 15)[0:5] + payload if not flags & 0x8 else payload
        flags |= 0x20 if not flags & 0x8 else 0
    if draw(st.booleans()) and len(block) > 2:
        cut = len(payload) - 1
        return frame(0x1, flags, sid, payload[:cut]) + frame(0x9, 0x4, sid, payload[cut:])
    return frame(0x1, flags | 0x4, sid, payload)


@st.composite
def data_frames(draw: Any) -> bytes:
    sid = draw(_SIDS)
    body = bytes(draw(st.integers(0, 40)))
    flags = 0x1 if draw(st.booleans()) else 0
    if draw(st.booleans()):
        pad = draw(st.integers(0, 5))
        return frame(0x0, flags | 0x8, sid, bytes([pad]) + body + bytes(pad))
    return frame(0x0, flags, sid, body)


_other_frames = st.one_of(
    st.builds(
        lambda sid, inc: frame(0x8, 0, sid, struct.pack(">L", inc)),
        _SIDS,
        st.sampled_from([0, 1, 1000, 2**31 - 1]),
    ),
    st.builds(
        lambda sid, code: frame(0x3, 0, sid, struct.pack(">L", code)), _SIDS, st.integers(0, 14)
    ),
    st.builds(lambda ack: frame(0x6, ack, 0, b"12345678"), st.sampled_from([0, 1])),
    st.builds(
        lambda sid, dep: frame(0x2, 0, sid, struct.pack(">LB", dep, 7)),
        _SIDS,
        st.sampled_from([0, 1, 3]),
    ),
    st.builds(
        lambda pairs: frame(0x4, 0, 0, b"".join(struct.pack(">HL", k, v) for k, v in pairs)),
        st.lists(
            st.tuples(
                st.sampled_from([1, 2, 3, 4, 5, 6, 8, 0x99]),
                st.sampled_from([0, 1, 2, 100, 16384, 70000, 2**31 - 1, 2**31]),
            ),
            max_size=3,
            unique_by=lambda pair: pair[0],  # h2 checks only the last of repeated values
        ),
    ),
    st.just(frame(0x4, 1, 0)),
    st.builds(lambda code: frame(0x7, 0, 0, struct.pack(">LL", 1, code)), st.integers(0, 2)),
    st.just(frame(0x20, 0, 1, b"whatever")),
    st.builds(  # fixed-size frames of the wrong size, frames on the wrong stream
        lambda ftype, sid, size: frame(ftype, 0, sid, bytes(size)),
        st.sampled_from([0x2, 0x3, 0x4, 0x6, 0x7, 0x8, 0x9, 0x5]),
        _SIDS,
        st.sampled_from([0, 3, 4, 5, 7, 8, 9]),
    ),
)
_sequences = st.lists(st.one_of(headers_frames(), data_frames(), _other_frames), max_size=12)


def steps(conn: Any, chunks: list[bytes]) -> list[dict[str, Any]]:
    """The outcome of each chunk in turn, up to the first connection error."""
    out = []
    for chunk in chunks:
        out.append(outcome(conn, [chunk]))
        if out[-1]["error"] is not None:
            break
    return out


_QUIET = {"events": [], "resets": [], "goaway": [], "acks": []}


def agree(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    reset_by_us: set[int] = set()
    for a, b in zip(mine, theirs, strict=False):
        why = a.pop("why")
        b.pop("why")
        if a != b and not a["resets"] and {**a, "resets": b["resets"]} == b:
            # Frames on a stream we reset: RFC 9113 section 5.1 says ignore
            # them; h2 answers each with another RST_STREAM(STREAM_CLOSED).
            assert all(code == 5 and sid in reset_by_us for sid, code in b["resets"])
            continue
        reset_by_us.update(sid for sid, _ in a["resets"])
        if a == b:
            continue
        if reset_by_us and b["error"] and a["error"] is None and a == {**a, **_QUIET}:
            # A frame on a stream we reset: ignored (RFC 9113 section 5.1), where h2
            # may end the connection.
            return
        if (
            a["error"] == http2.ErrorCodes.PROTOCOL_ERROR
            and "idle stream" in why
            and not b["events"]
        ):
            # RST_STREAM or WINDOW_UPDATE on a stream never opened: RFC 9113
            # section 5.1 makes it a connection error; h2 ignores the frame.
            return
        if a["error"] == 5 and "closed stream" in why and (b["error"] or b["resets"]):
            # A frame after the stream ended both ways: RFC 9113 section 5.1 names a
            # connection error of type STREAM_CLOSED; h2 names PROTOCOL_ERROR, or
            # resets the stream.
            return
        if a["error"] == 1 and b["error"] and "unexpected CONTINUATION" in why:
            # RFC 9113 section 6.10 names PROTOCOL_ERROR; h2 may name another code.
            return
        if (a["error"], b["error"]) == (9, 1) and (a["goaway"], b["goaway"]) == ([9], [1]):
            # A header block that does not decode: COMPRESSION_ERROR by RFC 9113
            # section 4.3; h2 says PROTOCOL_ERROR.
            return
        if (
            b["error"] is not None
            and a["error"] is None
            and a["resets"]
            and all(e[0] == "StreamReset" for e in a["events"])
            and {code for _, code in a["resets"]} <= {1, 5}
        ):
            # A malformed request or response (RFC 9113 section 8.1.1), or a frame
            # on a half-closed stream or one the peer reset (section 5.1): the RFC
            # makes them stream errors, PROTOCOL_ERROR and STREAM_CLOSED; ours
            # resets that stream, h2 may end the whole connection.
            return
        assert a == b
    assert len(mine) == len(theirs)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_sequences)
def test_server_role_agrees_on_generated_frames(sequence: list[bytes]) -> None:
    ours, theirs = both(client_side=False)
    chunks = [PREFACE, *sequence]
    agree(steps(ours, chunks), steps(theirs, chunks))


@st.composite
def response_frames(draw: Any) -> bytes:
    sid = draw(_SIDS)
    headers = draw(
        st.sampled_from(
            [
                [(":status", "200"), ("content-type", "application/grpc")],
                [(":status", "100")],
                TRAILERS,
                [(":status", "200"), ("grpc-status", "0")],
            ]
        )
    )
    flags = 0x4 | (0x1 if draw(st.booleans()) else 0)
    return frame(0x1, flags, sid, hpack.Encoder().encode(headers))


_server_sequences = st.lists(
    st.one_of(response_frames(), data_frames(), _other_frames), max_size=12
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_server_sequences, st.lists(st.booleans(), min_size=3, max_size=3))
def test_client_role_agrees_on_generated_frames(sequence: list[bytes], ended: list[bool]) -> None:
    ours, theirs = both(client_side=True)
    for conn in (ours, theirs):
        for sid, end in zip((1, 3, 5), ended, strict=True):
            conn.send_headers(sid, REQUEST, end_stream=end)
        conn.data_to_send()
    agree(steps(ours, [frame(0x4, 0, 0), *sequence]), steps(theirs, [frame(0x4, 0, 0), *sequence]))
