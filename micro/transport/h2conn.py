"""The HTTP/2 connection the drivers use: ours (:mod:`.http2`) or h2's.

``MICRO_HTTP2=h2`` in the environment selects the h2-based connection below;
``MICRO_HTTP2=micro`` (the default) selects micro's own sans-IO core. Both
offer the same verbs and events of the same names and attributes, so the
drivers dispatch on either (see :func:`event_handlers`) and catch the errors
of either (:data:`H2Error`, :data:`ProtocolError`).

h2 set up for speed on our own headers, strictness on the peer's.

We build our outbound headers ourselves, correctly, so h2 need not validate or
normalise them (15-25% of a small call's CPU). Inbound headers come from
untrusted peers and stay validated.

Received DATA frames do not go through h2's frame buffer, which copies a
frame's payload three times (into its buffer, out of it, and into the frame
object). Their payload is handed to h2 as views of the bytes received, in as
many pieces as it arrived in; h2 accounts each piece as a DATA frame of its
own (the END_STREAM flag on the last), which is the same to its flow control
and stream states. Every other frame, and a padded DATA frame, is parsed by
h2 as usual, with the frame size limit checked as soon as a header is in.

h2 4.x formats ``repr(frame)`` for every received frame even with logging off,
and hyperframe hex-encodes a DATA frame's whole payload to do it; DATA frames
we hand it have a cheap ``repr`` instead.
"""

from __future__ import annotations

import os
import struct
from typing import Any, TypeVar, Union

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from h2.exceptions import FrameTooLargeError
from hyperframe.exceptions import InvalidPaddingError
from hyperframe.frame import DataFrame, GoAwayFrame

from . import http2

__all__ = [
    "H2Connection",
    "H2Error",
    "IMPLEMENTATIONS",
    "MAX_FRAME_SIZE",
    "ProtocolError",
    "WINDOW_SIZE",
    "event_handlers",
    "implementation",
    "new_connection",
    "start",
]

#: The values ``MICRO_HTTP2`` may take.
IMPLEMENTATIONS = ("micro", "h2")
DEFAULT_IMPLEMENTATION = "micro"

#: Errors of either implementation's verbs (catch with ``except H2Error``).
H2Error = (h2.exceptions.H2Error, http2.H2Error)
#: What either implementation's ``receive_data`` raises on a connection error.
ProtocolError = (h2.exceptions.ProtocolError, http2.ProtocolError)


def implementation() -> str:
    """The HTTP/2 implementation chosen by ``MICRO_HTTP2`` (``micro`` or ``h2``)."""
    name = os.environ.get("MICRO_HTTP2", "").strip().lower() or DEFAULT_IMPLEMENTATION
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"MICRO_HTTP2 must be one of {', '.join(IMPLEMENTATIONS)}, not {name!r}")
    return name


H = TypeVar("H")


def event_handlers(handlers: dict[str, H]) -> dict[type, H]:
    """Handlers by event class name, keyed by the classes of both implementations."""
    out: dict[type, H] = {}
    for name, handler in handlers.items():
        out[getattr(h2.events, name)] = handler
        out[getattr(http2, name)] = handler
    return out


#: Flow-control window we grant a peer per stream: large, so a fast sender is
#: rarely stalled by window updates, yet a stream whose reader is slow can hold
#: only this much of the connection's window.
WINDOW_SIZE = 1024 * 1024
#: ... and per connection: many streams' worth, so slow streams never starve
#: the others on the same connection.
CONNECTION_WINDOW_SIZE = 16 * WINDOW_SIZE
#: Largest DATA frame we accept: fewer frames per large message.
MAX_FRAME_SIZE = 1024 * 1024 - 1


_FRAME_HEADER = struct.Struct(">HBBBL")  # 24-bit length, type, flags, stream id


_DATA = 0x0
_END_STREAM = 0x1
_PADDED = 0x8
_ENDS_STREAM = frozenset({"END_STREAM"})
_NO_FLAGS: frozenset[str] = frozenset()


class _QuietDataFrame(DataFrame):
    """A DATA frame whose ``repr`` does not dump its payload."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"DataFrame(stream_id={self.stream_id}, length={len(self.data)})"


class _Connection(h2.connection.H2Connection):
    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self._frame_dispatch_table[_QuietDataFrame] = self._receive_data_frame
        # The DATA frame whose payload is being received, if any.
        self._data_left = 0  # payload bytes still to come
        self._data_stream = 0
        self._data_ends = False  # it carries END_STREAM

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Any], list[Any]]:
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors._error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def _prepare_for_sending(self, frames: list[Any]) -> None:
        # DATA frames are written as header + payload straight into the
        # outbound buffer: hyperframe's serialize() copies a payload three
        # times (to bytes, into a join, onto the header), which dominates the
        # cost of large messages.
        out = self._data_to_send
        for frame in frames:
            if type(frame) is DataFrame and not frame.pad_length:
                data = frame.data
                size = len(data)
                frame.body_len = size
                flags = 0x1 if "END_STREAM" in frame.flags else 0x0
                out += _FRAME_HEADER.pack(
                    (size >> 8) & 0xFFFF, size & 0xFF, 0x0, flags, frame.stream_id & 0x7FFFFFFF
                )
                out += data
            else:
                out += frame.serialize()

    def data_to_send(self, amount: int | None = None) -> Any:
        """Everything queued, handed over without the copy h2 makes (a bytearray)."""
        if amount is not None:
            return super().data_to_send(amount)
        data = self._data_to_send
        self._data_to_send = bytearray()
        return data

    def pending_frame_bytes(self) -> int:
        """Bytes still missing from the frame being received (0 at a frame boundary).

        Feeding a large frame in small slices would make h2 parse its header
        (and build a frame object) again for every slice, or split a DATA
        payload into needlessly many pieces; a driver feeds the rest of such a
        frame in one piece instead.
        """
        if self._data_left:
            return self._data_left
        buffered = self.incoming_buffer._data
        if len(buffered) < 9:
            return 0
        return max(0, 9 + int.from_bytes(buffered[:3], "big") - len(buffered))

    def outbound_size(self) -> int:
        """Bytes queued and not yet taken by ``data_to_send``."""
        return len(self._data_to_send)

    def send_goaway(self, last_stream_id: int, error_code: int = 0) -> None:
        """Queue a GOAWAY frame, leaving open streams able to finish."""
        frame = GoAwayFrame(0)
        frame.last_stream_id = last_stream_id
        frame.error_code = error_code
        self._data_to_send += frame.serialize()

    def receive_data(self, data: Any) -> list[Any]:
        """The events ``data`` completes.

        ``data`` must not change afterwards (bytes, or a view of bytes): the
        payloads of DATA frames are handed on as views of it.
        """
        events: list[Any] = []
        view = memoryview(data)
        buf = self.incoming_buffer
        buf.max_frame_size = self.max_inbound_frame_size
        try:
            while view:
                if self._data_left:
                    size = min(self._data_left, len(view))
                    self._data_left -= size
                    events.extend(self._receive_frame(self._data_piece(view[:size])))
                    view = view[size:]
                elif buf._preamble_len:
                    size = min(buf._preamble_len, len(view))
                    buf.add_data(view[:size])  # h2 checks the client preface
                    view = view[size:]
                else:
                    view = self._receive_frame_start(view, events)
        except InvalidPaddingError as e:
            self._terminate_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            raise h2.exceptions.ProtocolError("Received frame with invalid padding.") from e
        except h2.exceptions.ProtocolError as e:
            self._terminate_connection(e.error_code)
            raise
        return events

    def _receive_frame_start(self, view: memoryview, events: list[Any]) -> memoryview:
        """Take the next frame (or as much of it as ``view`` holds); the rest of ``view``."""
        buf = self.incoming_buffer
        held = buf._data
        if held:
            if len(held) < 9:  # a header split between reads
                size = 9 - len(held)
                buf.add_data(view[:size])
                view = view[size:]
                if len(held) < 9:
                    return view
                header: Any = held
            else:  # h2 holds the start of a frame it is parsing
                header = None
        else:
            if len(view) < 9:
                buf.add_data(view)
                return view[len(view) :]
            header = view
        if header is not None:
            length = int.from_bytes(header[:3], "big")
            if length > buf.max_frame_size:
                raise FrameTooLargeError(
                    f"Received overlong frame: length {length}, max {buf.max_frame_size}"
                )
            flags = header[4]
            stream_id = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
            if (
                header[3] == _DATA
                and not flags & _PADDED
                and stream_id
                and not buf._headers_buffer  # a DATA frame here is h2's error to raise
            ):
                if held:
                    del held[:9]
                else:
                    view = view[9:]
                self._data_left = length
                self._data_stream = stream_id
                self._data_ends = bool(flags & _END_STREAM)
                if not length:
                    events.extend(self._receive_frame(self._data_piece(view[:0])))
                return view
        # h2 parses this frame: give it the rest of it, then take what it parsed.
        size = 9 + int.from_bytes((held or view)[:3], "big") - len(held)
        buf.add_data(view[:size])
        for frame in buf:
            if type(frame) is DataFrame:
                frame.__class__ = _QuietDataFrame
            events.extend(self._receive_frame(frame))
        return view[size:]

    def _data_piece(self, payload: memoryview) -> _QuietDataFrame:
        """All or the next part of the current DATA frame's payload, as a frame for h2."""
        piece: _QuietDataFrame = DataFrame.__new__(_QuietDataFrame)
        piece.stream_id = self._data_stream
        piece.flags = _ENDS_STREAM if self._data_ends and not self._data_left else _NO_FLAGS  # type: ignore[assignment]
        piece.data = payload  # type: ignore[assignment]
        piece.pad_length = 0
        piece.body_len = len(payload)
        return piece


H2Connection = Union[_Connection, http2.Connection]  # noqa: UP007


def new_connection(
    *,
    client_side: bool,
    max_concurrent_streams: int = 1000,
    max_header_list_size: int = 64 * 1024,
    kind: str | None = None,
) -> H2Connection:
    """A connection object with micro's settings, preamble not yet sent.

    ``kind`` is ``micro`` or ``h2``; by default, what ``MICRO_HTTP2`` says.
    """
    if (kind or implementation()) == "micro":
        return http2.Connection(
            client_side=client_side,
            initial_window_size=WINDOW_SIZE,
            max_frame_size=MAX_FRAME_SIZE,
            max_concurrent_streams=max_concurrent_streams,
            max_header_list_size=max_header_list_size,
        )
    config = h2.config.H2Configuration(
        client_side=client_side,
        header_encoding="utf-8",
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=True,
        normalize_inbound_headers=True,
    )
    conn = _Connection(config)
    conn.local_settings = h2.settings.Settings(
        client=client_side,
        initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW_SIZE,
            h2.settings.SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        },
    )
    conn.max_inbound_frame_size = MAX_FRAME_SIZE
    # h2 applies a local MAX_HEADER_LIST_SIZE to its decoder only when it
    # changes after the preamble; ours is set before it, so apply it here.
    conn.decoder.max_header_list_size = max_header_list_size
    return conn


def start(conn: H2Connection) -> None:
    """Queue the preamble and widen the connection window to CONNECTION_WINDOW_SIZE."""
    conn.initiate_connection()
    conn.increment_flow_control_window(CONNECTION_WINDOW_SIZE - 65535)
