"""h2 set up for speed on our own headers, strictness on the peer's.

We build our outbound headers ourselves, correctly, so h2 need not validate or
normalise them (15-25% of a small call's CPU). Inbound headers come from
untrusted peers and stay validated.

h2 4.x formats ``repr(frame)`` for every received frame even with logging off,
and hyperframe hex-encodes a DATA frame's whole payload to do it; received
DATA frames are re-classed to a subclass with a cheap ``repr`` so large
messages do not pay for a hex dump nobody reads.
"""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.exceptions import InvalidPaddingError
from hyperframe.frame import DataFrame, GoAwayFrame

__all__ = ["H2Connection", "new_connection", "start", "WINDOW_SIZE", "MAX_FRAME_SIZE"]

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


class _QuietDataFrame(DataFrame):
    __slots__ = ()

    def __repr__(self) -> str:
        return f"DataFrame(stream_id={self.stream_id}, length={len(self.data)})"


class _Connection(h2.connection.H2Connection):
    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config=config)
        self._frame_dispatch_table[_QuietDataFrame] = self._receive_data_frame

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
        """Bytes still missing from a frame h2 has begun to buffer (0 at a frame boundary).

        Feeding a large frame in small slices would make h2 parse its header
        (and build a frame object) again for every slice; a driver feeds the
        rest of such a frame in one piece instead.
        """
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
        events: list[Any] = []
        self.incoming_buffer.add_data(data)
        self.incoming_buffer.max_frame_size = self.max_inbound_frame_size
        try:
            for frame in self.incoming_buffer:
                if type(frame) is DataFrame:
                    frame.__class__ = _QuietDataFrame
                events.extend(self._receive_frame(frame))
        except InvalidPaddingError as e:
            self._terminate_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            raise h2.exceptions.ProtocolError("Received frame with invalid padding.") from e
        except h2.exceptions.ProtocolError as e:
            self._terminate_connection(e.error_code)
            raise
        return events


H2Connection = _Connection


def new_connection(
    *,
    client_side: bool,
    max_concurrent_streams: int = 1000,
    max_header_list_size: int = 64 * 1024,
) -> _Connection:
    """A connection object with micro's settings, preamble not yet sent."""
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


def start(conn: h2.connection.H2Connection) -> None:
    """Queue the preamble and widen the connection window to CONNECTION_WINDOW_SIZE."""
    conn.initiate_connection()
    conn.increment_flow_control_window(CONNECTION_WINDOW_SIZE - 65535)
