"""HTTP/2 (RFC 9113), sans-IO: one connection's frames and state, for either role.

Bytes go in (:meth:`Connection.receive_data`), events come out; verbs
(:meth:`~Connection.send_headers`, :meth:`~Connection.send_data`, ...) queue
frames that :meth:`~Connection.data_to_send` hands over. No I/O, no clocks.
The surface is the part of h2's ``H2Connection`` that micro's drivers use, with
events of the same names and attributes, so h2 stays usable behind the same
drivers as a fallback and as the oracle of the differential tests.

Cheap on the common path: frames are parsed with one ``struct`` call on the
bytes received, DATA payloads are handed on as views of those bytes (in
pieces as they arrive, so a large frame is never buffered whole), outbound
headers are encoded from static-table indexes (see :mod:`.hpack`), and no
object is built per frame other than the events themselves.

Errors follow the RFC: a connection error raises :class:`ProtocolError` whose
``error_code`` is the code of the GOAWAY already queued; a stream error (a
malformed request or response, a frame on a stream closed by a reset) resets
only that stream and the connection carries on. One exception is kept from
h2: a peer that opens a stream over our concurrency limit, which the RFC answers
with a stream error, loses the connection (PROTOCOL_ERROR), as micro's defence
against stream floods expects.

One module, on purpose: the connection is one state machine whose frame
handlers share its streams, flow-control windows and settings, and the hot
path stays within one class, so a small call costs attribute lookups rather
than calls across modules. The header codec it uses is apart, in ``hpack``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any, ClassVar

from .hpack import Decoder, Encoder, HPACKError, OversizedHeaderListError

__all__ = [
    "ChangedSetting",
    "Connection",
    "ConnectionTerminated",
    "DataReceived",
    "ErrorCodes",
    "H2Error",
    "InformationalResponseReceived",
    "PingAckReceived",
    "PingReceived",
    "PriorityUpdated",
    "ProtocolError",
    "RemoteSettingsChanged",
    "RequestReceived",
    "ResponseReceived",
    "SettingCodes",
    "SettingsAcknowledged",
    "StreamClosedError",
    "StreamEnded",
    "StreamReset",
    "TrailersReceived",
    "WindowUpdated",
]


class ErrorCodes(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class SettingCodes(enum.IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6
    ENABLE_CONNECT_PROTOCOL = 0x8


# Codes are stored and handed on typed as these unions rather than as int, so that a compiled
# build (mypyc) keeps the enum members as the pure module does instead of unboxing them to
# plain ints. (An expression of such a type is still taken as int: a member is made where it
# is stored, as in StreamReset.)
ErrorCode = ErrorCodes | int
SettingCode = SettingCodes | int


# -- errors ------------------------------------------------------------------


class H2Error(Exception):
    """Something the connection cannot do or accept."""

    error_code: ErrorCode = ErrorCodes.PROTOCOL_ERROR


class ProtocolError(H2Error):
    """The peer broke the protocol: a GOAWAY with ``error_code`` is queued."""

    def __init__(self, message: str, error_code: ErrorCode = ErrorCodes.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.error_code = error_code


class StreamClosedError(H2Error):
    """A verb on a stream that is closed (or was never opened)."""

    def __init__(self, stream_id: int) -> None:
        super().__init__(f"stream {stream_id} is closed")
        self.stream_id = stream_id
        self.error_code = ErrorCodes.STREAM_CLOSED


class FlowControlError(H2Error):
    """More DATA than the peer's window allows (a local misuse)."""

    error_code = ErrorCodes.FLOW_CONTROL_ERROR


# -- events ------------------------------------------------------------------


class _Event:
    __slots__: tuple[str, ...] = ()

    def __repr__(self) -> str:
        # By dir(), not __slots__: a compiled (mypyc) class keeps no __slots__.
        names = [n for n in dir(self) if not n.startswith("_")]
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in names)
        return f"<{type(self).__name__} {fields}>"


class RequestReceived(_Event):
    __slots__ = ("headers", "priority_updated", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.stream_id = stream_id
        self.headers = headers
        self.stream_ended: StreamEnded | None = None
        self.priority_updated: PriorityUpdated | None = None


class ResponseReceived(RequestReceived):
    __slots__ = ()


class TrailersReceived(RequestReceived):
    __slots__ = ()


class InformationalResponseReceived(RequestReceived):
    __slots__ = ()


class DataReceived(_Event):
    __slots__ = ("data", "flow_controlled_length", "stream_ended", "stream_id")

    def __init__(self, stream_id: int, data: Any, flow_controlled_length: int) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_controlled_length = flow_controlled_length
        self.stream_ended: StreamEnded | None = None


class StreamEnded(_Event):
    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset(_Event):
    __slots__ = ("error_code", "remote_reset", "stream_id")

    def __init__(self, stream_id: int, error_code: int, remote_reset: bool = True) -> None:
        self.stream_id = stream_id
        try:  # the code's member, as h2 gives it, unless ErrorCodes has none
            self.error_code: ErrorCode = ErrorCodes(error_code)
        except ValueError:
            self.error_code = error_code
        self.remote_reset = remote_reset


class WindowUpdated(_Event):
    __slots__ = ("delta", "stream_id")

    def __init__(self, stream_id: int, delta: int) -> None:
        self.stream_id = stream_id
        self.delta = delta


class ChangedSetting:
    __slots__ = ("new_value", "original_value", "setting")

    def __init__(self, setting: SettingCode, original_value: int | None, new_value: int) -> None:
        self.setting = setting
        self.original_value = original_value
        self.new_value = new_value

    def __repr__(self) -> str:
        return f"ChangedSetting({self.setting!r}, {self.original_value}, {self.new_value})"


class RemoteSettingsChanged(_Event):
    __slots__ = ("changed_settings",)

    def __init__(self, changed_settings: dict[SettingCode, ChangedSetting]) -> None:
        self.changed_settings = changed_settings


class SettingsAcknowledged(RemoteSettingsChanged):
    __slots__ = ()


class PingReceived(_Event):
    __slots__ = ("ping_data",)

    def __init__(self, ping_data: bytes) -> None:
        self.ping_data = ping_data


class PingAckReceived(PingReceived):
    __slots__ = ()


class PriorityUpdated(_Event):
    __slots__ = ("depends_on", "exclusive", "stream_id", "weight")

    def __init__(self, stream_id: int, depends_on: int, weight: int, exclusive: bool) -> None:
        self.stream_id = stream_id
        self.depends_on = depends_on
        self.weight = weight
        self.exclusive = exclusive


class ConnectionTerminated(_Event):
    __slots__ = ("additional_data", "error_code", "last_stream_id")

    def __init__(self, error_code: int, last_stream_id: int, additional_data: bytes | None) -> None:
        try:  # as in StreamReset
            self.error_code: ErrorCode = ErrorCodes(error_code)
        except ValueError:
            self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data


# -- settings ----------------------------------------------------------------


class Settings:
    """One side's settings, by name (RFC 9113 section 6.5.2 defaults)."""

    __slots__ = (
        "enable_connect_protocol",
        "enable_push",
        "header_table_size",
        "initial_window_size",
        "max_concurrent_streams",
        "max_frame_size",
        "max_header_list_size",
    )

    _NAMES: ClassVar[dict[SettingCode, str]] = {
        SettingCodes.HEADER_TABLE_SIZE: "header_table_size",
        SettingCodes.ENABLE_PUSH: "enable_push",
        SettingCodes.MAX_CONCURRENT_STREAMS: "max_concurrent_streams",
        SettingCodes.INITIAL_WINDOW_SIZE: "initial_window_size",
        SettingCodes.MAX_FRAME_SIZE: "max_frame_size",
        SettingCodes.MAX_HEADER_LIST_SIZE: "max_header_list_size",
        SettingCodes.ENABLE_CONNECT_PROTOCOL: "enable_connect_protocol",
    }

    def __init__(self) -> None:
        self.header_table_size = 4096
        self.enable_push = 1
        self.max_concurrent_streams = 2**31 - 1  # unlimited until said otherwise
        self.initial_window_size = 65535
        self.max_frame_size = 16384
        self.max_header_list_size = 2**31 - 1
        self.enable_connect_protocol = 0

    def get(self, code: int) -> int | None:
        name = self._NAMES.get(code)
        return None if name is None else int(getattr(self, name))

    def set(self, code: int, value: int) -> None:
        name = self._NAMES.get(code)
        if name is not None:
            setattr(self, name, value)

    def items(self) -> list[tuple[SettingCode, int]]:
        return [(code, getattr(self, name)) for code, name in self._NAMES.items()]


def _check_setting(code: int, value: int, client_side: bool) -> None:
    """A connection error for a value the RFC does not allow."""
    if code == SettingCodes.ENABLE_PUSH and (value > 1 or (client_side and value)):
        raise ProtocolError(f"invalid SETTINGS_ENABLE_PUSH {value}")
    if code == SettingCodes.INITIAL_WINDOW_SIZE and value > _MAX_WINDOW:
        raise ProtocolError(
            f"SETTINGS_INITIAL_WINDOW_SIZE {value} is too large", ErrorCodes.FLOW_CONTROL_ERROR
        )
    if code == SettingCodes.MAX_FRAME_SIZE and not 16384 <= value <= 16777215:
        raise ProtocolError(f"invalid SETTINGS_MAX_FRAME_SIZE {value}")
    if code == SettingCodes.ENABLE_CONNECT_PROTOCOL and value > 1:
        raise ProtocolError(f"invalid SETTINGS_ENABLE_CONNECT_PROTOCOL {value}")


# -- wire constants ----------------------------------------------------------

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADER = struct.Struct(">HBBBL")  # 24-bit length as 16 + 8 bits, type, flags, stream id
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from
_U32 = struct.Struct(">L")
_SETTING = struct.Struct(">HL")

_DATA, _HEADERS, _PRIORITY, _RST_STREAM, _SETTINGS = 0x0, 0x1, 0x2, 0x3, 0x4
_PUSH_PROMISE, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = 0x5, 0x6, 0x7, 0x8, 0x9

_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

_MAX_WINDOW = 2**31 - 1

# Why a stream is closed, as far as frames arriving on it are concerned.
_BY_END, _BY_SENT_RESET, _BY_RECEIVED_RESET = 0, 1, 2
#: How many closed streams' reasons are remembered; older ones count as reset.
_CLOSED_MEMORY = 1024

_CONNECTION_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)
_REQUEST_PSEUDO = frozenset({":method", ":scheme", ":authority", ":path", ":protocol"})
# Octets allowed in a field name: RFC 9110 token characters, lower case only.
_NAME_OK = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


def _frame(ftype: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    size = len(payload)
    return _pack_header(size >> 8, size & 0xFF, ftype, flags, stream_id) + payload


# -- streams -----------------------------------------------------------------


class _Stream:
    __slots__ = (
        "content_length",
        "id",
        "in_max",
        "in_processed",
        "in_window",
        "out_window",
        "received",
        "recv_end",
        "recv_headers",
        "sent_end",
        "sent_headers",
    )

    def __init__(self, stream_id: int, in_window: int, out_window: int) -> None:
        self.id = stream_id
        self.in_window = in_window  # what the peer may still send us
        self.in_max = in_window
        self.in_processed = 0  # received, processed, not yet given back
        self.out_window = out_window  # what we may still send
        self.sent_headers = False
        self.sent_end = False
        self.recv_headers = 0  # header blocks received (1xx ones not counted)
        self.recv_end = False
        self.content_length = -1  # declared by the peer, -1 if not
        self.received = 0  # DATA payload received

    @property
    def open(self) -> bool:
        """Whether the stream is open or half-closed (it counts against concurrency)."""
        return not (self.sent_end and self.recv_end)


def _window_increment(current: int, maximum: int, processed: int) -> int:
    """How much window to give back now (h2's batching: at half a window, or when shut)."""
    if not processed:
        return 0
    if (current == 0 and processed > min(1024, maximum // 4)) or processed >= maximum // 2:
        return max(0, min(processed, maximum - current))
    return 0


# -- the connection ----------------------------------------------------------


class Connection:
    """An HTTP/2 connection's state, for a client (``client_side``) or a server."""

    def __init__(
        self,
        *,
        client_side: bool,
        initial_window_size: int = 65535,
        max_frame_size: int = 16384,
        max_concurrent_streams: int = 100,
        max_header_list_size: int = 65536,
        header_table_size: int = 4096,
    ) -> None:
        self.client_side = client_side
        self.local_settings = Settings()
        local = self.local_settings
        local.initial_window_size = initial_window_size
        local.max_frame_size = max_frame_size
        local.max_concurrent_streams = max_concurrent_streams
        local.max_header_list_size = max_header_list_size
        local.header_table_size = header_table_size
        local.enable_push = 0
        self.remote_settings = Settings()
        self._pending_settings: list[dict[SettingCode, int]] = []
        self.max_inbound_frame_size = max_frame_size
        self.max_outbound_frame_size = 16384
        self.encoder = Encoder()
        self.decoder = Decoder(header_table_size, max_header_list_size)
        self.streams: dict[int, _Stream] = {}
        self._closed_streams: dict[int, int] = {}
        self.highest_inbound_stream_id = 0
        self.highest_outbound_stream_id = 0
        self._open_inbound = 0
        self._open_outbound = 0
        # Connection flow control.
        self._in_window = 65535
        self._in_max = 65535
        self._in_processed = 0
        self._out_window = 65535
        # Receiving.
        self._preface_left = b"" if client_side else PREFACE
        self._settings_seen = False
        self._held = bytearray()  # the start of a frame not yet whole
        self._data_left = 0  # payload bytes of the DATA frame being received still to come
        self._data_stream: _Stream | None = None
        self._data_sid = 0
        self._data_ends = False
        self._data_discard = False
        self._block = bytearray()  # a header block awaiting CONTINUATION
        self._block_sid = 0
        self._block_flags = 0
        self._block_priority: bytes | None = None
        self._closed = False
        self._out = bytearray()
        self._events: list[Any] = []  # those of the receive_data call under way

    # -- starting ------------------------------------------------------------

    def initiate_connection(self) -> None:
        """Queue the preface (client) and our SETTINGS."""
        if self.client_side:
            self._out += PREFACE
        initial = {
            code: value
            for code, value in self.local_settings.items()
            if not (code == SettingCodes.MAX_HEADER_LIST_SIZE and value == 2**31 - 1)
            and not (code == SettingCodes.ENABLE_CONNECT_PROTOCOL and value == 0)
        }
        # In force already; the peer's acknowledgement is reported all the same.
        self._pending_settings.append(initial)
        payload = b"".join([_SETTING.pack(code, value) for code, value in initial.items()])
        self._out += _frame(_SETTINGS, 0, 0, payload)

    def update_settings(self, new_settings: dict[int, int]) -> None:
        """Send new local settings; they apply once the peer acknowledges them."""
        for code, value in new_settings.items():
            try:
                _check_setting(code, value, not self.client_side)
            except ProtocolError as exc:
                raise ValueError(str(exc)) from None
        pending: dict[SettingCode, int] = dict(new_settings)
        self._pending_settings.append(pending)
        payload = b"".join([_SETTING.pack(code, value) for code, value in new_settings.items()])
        self._out += _frame(_SETTINGS, 0, 0, payload)

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        """Grant the peer ``increment`` more bytes, on the connection or one stream."""
        if not 1 <= increment <= _MAX_WINDOW:
            raise ValueError(f"flow control increment must be 1 to {_MAX_WINDOW}")
        if stream_id:
            stream = self._get_stream(stream_id)
            if stream.in_window + increment > _MAX_WINDOW:
                raise FlowControlError("flow control window would overflow")
            stream.in_window += increment
            stream.in_max += increment
        else:
            if self._in_window + increment > _MAX_WINDOW:
                raise FlowControlError("flow control window would overflow")
            self._in_window += increment
            self._in_max += increment
            stream_id = 0
        self._out += _frame(_WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))

    # -- sending -------------------------------------------------------------

    def get_next_available_stream_id(self) -> int:
        highest = self.highest_outbound_stream_id
        if not highest:
            return 1 if self.client_side else 2
        if highest + 2 > _MAX_WINDOW:
            raise ProtocolError("no stream ids left on this connection")
        return highest + 2

    def _get_stream(self, stream_id: int) -> _Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamClosedError(stream_id)
        return stream

    def send_headers(
        self, stream_id: int, headers: Any, end_stream: bool = False, **_ignored: Any
    ) -> None:
        """Queue a header block: a request, a response, or (after one) trailers."""
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self._open_outbound_stream(stream_id)
        elif stream.sent_end:
            raise StreamClosedError(stream_id)
        elif stream.sent_headers and not end_stream:
            raise ProtocolError("trailers must end the stream")
        elif not self.client_side and not stream.sent_headers and _informational(headers):
            end_stream = False  # a 1xx response: the real one follows
        else:
            stream.sent_headers = True
        block = self.encoder.encode(headers)
        flags = _END_STREAM if end_stream else 0
        size = len(block)
        limit = self.max_outbound_frame_size
        out = self._out
        if size <= limit:
            out += _pack_header(size >> 8, size & 0xFF, _HEADERS, flags | _END_HEADERS, stream_id)
            out += block
        else:
            view = memoryview(block)
            out += _frame(_HEADERS, flags, stream_id, bytes(view[:limit]))
            for pos in range(limit, size, limit):
                piece = bytes(view[pos : pos + limit])
                last = _END_HEADERS if pos + limit >= size else 0
                out += _frame(_CONTINUATION, last, stream_id, piece)
        if end_stream:
            self._end_local(stream)

    def _open_outbound_stream(self, stream_id: int) -> _Stream:
        if stream_id in self._closed_streams or stream_id <= self.highest_outbound_stream_id:
            raise StreamClosedError(stream_id)
        if (stream_id % 2 == 1) != self.client_side or stream_id > _MAX_WINDOW:
            raise ProtocolError(f"stream {stream_id} is not ours to open")
        if self._open_outbound + 1 > self.remote_settings.max_concurrent_streams:
            raise ProtocolError("too many streams open", ErrorCodes.REFUSED_STREAM)
        stream = _Stream(
            stream_id,
            self.local_settings.initial_window_size,
            self.remote_settings.initial_window_size,
        )
        self.streams[stream_id] = stream
        self.highest_outbound_stream_id = stream_id
        self._open_outbound += 1
        stream.sent_headers = True
        return stream

    def send_data(
        self, stream_id: int, data: Any, end_stream: bool = False, pad_length: int | None = None
    ) -> None:
        """Queue a DATA frame; ``data`` must fit the window and the peer's frame size."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.sent_end or not stream.sent_headers:
            raise StreamClosedError(stream_id)
        size = len(data)
        if pad_length is not None:
            if not 0 <= pad_length <= 255:
                raise ValueError("pad_length must be 0 to 255")
            frame_size = size + pad_length + 1
        else:
            frame_size = size
        if frame_size > self._out_window or frame_size > stream.out_window:
            raise FlowControlError(f"cannot send {frame_size} bytes: the window is smaller")
        if frame_size > self.max_outbound_frame_size:
            raise ProtocolError(
                f"cannot send a {frame_size} byte frame: over the peer's limit",
                ErrorCodes.FRAME_SIZE_ERROR,
            )
        self._out_window -= frame_size
        stream.out_window -= frame_size
        flags = _END_STREAM if end_stream else 0
        out = self._out
        if pad_length is None:
            out += _pack_header(size >> 8, size & 0xFF, _DATA, flags, stream_id)
            out += data
        else:
            out += _pack_header(
                frame_size >> 8, frame_size & 0xFF, _DATA, flags | _PADDED, stream_id
            )
            out.append(pad_length)
            out += data
            out += bytes(pad_length)
        if end_stream:
            self._end_local(stream)

    def end_stream(self, stream_id: int) -> None:
        """Queue an empty DATA frame that ends our side of the stream."""
        stream = self.streams.get(stream_id)
        if stream is None or stream.sent_end:
            raise StreamClosedError(stream_id)
        self._out += _pack_header(0, 0, _DATA, _END_STREAM, stream_id)
        self._end_local(stream)

    def _end_local(self, stream: _Stream) -> None:
        stream.sent_end = True
        if stream.recv_end:
            self._close_stream(stream, _BY_END)

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """Queue RST_STREAM; frames the peer still sends on the stream are ignored."""
        stream = self._get_stream(stream_id)
        self._out += _frame(_RST_STREAM, 0, stream_id, _U32.pack(error_code))
        self._close_stream(stream, _BY_SENT_RESET)

    def _close_stream(self, stream: _Stream, reason: int) -> None:
        sid = stream.id
        if self.streams.pop(sid, None) is None:
            return
        if (sid % 2 == 1) == self.client_side:
            self._open_outbound -= 1
        else:
            self._open_inbound -= 1
        closed = self._closed_streams
        closed[sid] = reason
        if len(closed) > _CLOSED_MEMORY:
            del closed[next(iter(closed))]

    def ping(self, opaque_data: bytes) -> None:
        if len(opaque_data) != 8:
            raise ValueError("PING data must be 8 bytes")
        self._out += _frame(_PING, 0, 0, bytes(opaque_data))

    def send_goaway(
        self, last_stream_id: int, error_code: int = 0, additional_data: bytes = b""
    ) -> None:
        """Queue GOAWAY; streams up to ``last_stream_id`` may still finish."""
        payload = _U32.pack(last_stream_id & _MAX_WINDOW) + _U32.pack(error_code) + additional_data
        self._out += _frame(_GOAWAY, 0, 0, payload)

    def close_connection(
        self,
        error_code: int = 0,
        additional_data: bytes | None = None,
        last_stream_id: int | None = None,
    ) -> None:
        """Queue GOAWAY and stop: nothing more is received."""
        if last_stream_id is None:
            last_stream_id = self.highest_inbound_stream_id
        self.send_goaway(last_stream_id, error_code, additional_data or b"")
        self._closed = True

    def local_flow_control_window(self, stream_id: int) -> int:
        """How many bytes of DATA may go out on the stream now."""
        stream = self._get_stream(stream_id)
        return min(self._out_window, stream.out_window)

    def acknowledge_received_data(self, acknowledged_size: int, stream_id: int) -> None:
        """Received bytes have been dealt with: give their window back (in batches)."""
        if acknowledged_size < 0:
            raise ValueError("cannot acknowledge a negative amount of data")
        self._conn_processed(acknowledged_size)
        stream = self.streams.get(stream_id)
        if stream is not None and not stream.recv_end:
            stream.in_processed += acknowledged_size
            inc = _window_increment(stream.in_window, stream.in_max, stream.in_processed)
            if inc:
                stream.in_processed = 0
                stream.in_window += inc
                self._out += _frame(_WINDOW_UPDATE, 0, stream_id, _U32.pack(inc))

    def _conn_processed(self, size: int) -> None:
        self._in_processed += size
        inc = _window_increment(self._in_window, self._in_max, self._in_processed)
        if inc:
            self._in_processed = 0
            self._in_window += inc
            self._out += _frame(_WINDOW_UPDATE, 0, 0, _U32.pack(inc))

    @property
    def open_inbound_streams(self) -> int:
        return self._open_inbound

    @property
    def open_outbound_streams(self) -> int:
        return self._open_outbound

    def data_to_send(self, amount: int | None = None) -> Any:
        """Everything queued (or its first ``amount`` bytes), handed over as a bytearray."""
        out = self._out
        if amount is not None and amount < len(out):
            data = out[:amount]
            del out[:amount]
            return data
        self._out = bytearray()
        return out

    def clear_outbound_data_buffer(self) -> None:
        self._out = bytearray()

    def outbound_size(self) -> int:
        """Bytes queued and not yet taken by ``data_to_send``."""
        return len(self._out)

    def pending_frame_bytes(self) -> int:
        """Bytes still missing from the frame being received (0 at a frame boundary)."""
        if self._data_left:
            return self._data_left
        held = self._held
        if len(held) < 9:
            return 0
        return max(0, 9 + int.from_bytes(held[:3], "big") - len(held))

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: Any) -> list[Any]:
        """The events ``data`` completes.

        ``data`` must not change afterwards (bytes, or a view of bytes): DATA
        payloads are handed on as views of it. A connection error queues
        GOAWAY and raises :class:`ProtocolError`; nothing is received after it.
        """
        if self._closed:
            raise ProtocolError("the connection is closed")
        events: list[Any] = []
        self._events = events
        try:
            self._receive(memoryview(data), events)
        except ProtocolError as exc:
            self._closed = True
            self.send_goaway(self.highest_inbound_stream_id, exc.error_code)
            raise
        except HPACKError as bad_block:
            # Its own name: compiled (mypyc), a name bound by two except clauses has one type.
            self._closed = True
            code = (
                ErrorCodes.ENHANCE_YOUR_CALM
                if isinstance(bad_block, OversizedHeaderListError)
                else ErrorCodes.COMPRESSION_ERROR
            )
            self.send_goaway(self.highest_inbound_stream_id, code)
            raise ProtocolError(f"header block: {bad_block}", code) from bad_block
        return events

    def _receive(self, view: memoryview, events: list[Any]) -> None:
        pos = 0
        end = len(view)
        if self._preface_left:
            want = self._preface_left
            size = min(len(want), end)
            if view[:size] != want[:size]:
                raise ProtocolError("invalid HTTP/2 preface")
            self._preface_left = want[size:]
            pos = size
        while pos < end:
            if self._data_left:
                pos = self._data_piece(view, pos, end, events)
                continue
            held = self._held
            if held:
                if len(held) < 9:
                    take = min(9 - len(held), end - pos)
                    held += view[pos : pos + take]
                    pos += take
                    if len(held) < 9:
                        return
                    length = int.from_bytes(held[:3], "big")
                    if self._start_data(held, 0, length, events):
                        del held[:]
                        continue
                else:
                    length = int.from_bytes(held[:3], "big")
                take = min(9 + length - len(held), end - pos)
                held += view[pos : pos + take]
                pos += take
                if len(held) < 9 + length:
                    return
                frame = bytes(held)
                del held[:]
                sid = int.from_bytes(frame[5:9], "big") & _MAX_WINDOW
                self._on_frame(frame[3], frame[4], sid, memoryview(frame)[9:], events)
                continue
            if end - pos < 9:
                held += view[pos:end]
                return
            hi, lo, ftype, flags, sid = _unpack_header(view, pos)
            length = hi << 8 | lo
            if length > self.max_inbound_frame_size:
                self._check_length(length)
            if (
                ftype == _DATA
                and not flags & _PADDED
                and self._start_data(view, pos, length, events)
            ):
                pos += 9
                continue
            if pos + 9 + length > end:
                held += view[pos:end]
                return
            self._on_frame(
                ftype, flags, sid & _MAX_WINDOW, view[pos + 9 : pos + 9 + length], events
            )
            pos += 9 + length

    def _check_length(self, length: int) -> None:
        if length > self.max_inbound_frame_size:
            raise ProtocolError(
                f"frame of {length} bytes is over the limit of {self.max_inbound_frame_size}",
                ErrorCodes.FRAME_SIZE_ERROR,
            )

    def _start_data(self, header: Any, pos: int, length: int, events: list[Any]) -> bool:
        """Begin receiving an unpadded DATA frame in pieces; False if it is not one."""
        self._check_length(length)
        if header[pos + 3] != _DATA or header[pos + 4] & _PADDED:
            return False
        if self._block:
            raise ProtocolError("expected CONTINUATION")
        sid = int.from_bytes(header[pos + 5 : pos + 9], "big") & _MAX_WINDOW
        ends = bool(header[pos + 4] & _END_STREAM)
        stream = self._data_frame_start(sid, length, ends)
        self._data_sid = sid
        self._data_stream = stream
        self._data_ends = ends
        self._data_discard = stream is None
        self._data_left = length
        if not length:
            self._data_payload(memoryview(b""), 0, events)
        return True

    def _data_piece(self, view: memoryview, pos: int, end: int, events: list[Any]) -> int:
        size = min(self._data_left, end - pos)
        self._data_left -= size
        self._data_payload(view[pos : pos + size], size, events)
        return pos + size

    def _data_payload(self, payload: memoryview, size: int, events: list[Any]) -> None:
        """All or the next piece of the DATA frame being received."""
        if self._data_discard:
            if size:
                self._conn_processed(size)
            return
        stream = self._data_stream
        assert stream is not None
        if self.streams.get(stream.id) is not stream:
            # Reset (by us) while the frame was arriving: drop the rest of it.
            self._data_discard = True
            self._conn_processed(size)
            return
        if stream.content_length >= 0 and not self._after_payload(stream, size):
            self._data_discard = True
            self._conn_processed(size)
            return
        event = DataReceived(self._data_sid, payload, size)
        events.append(event)
        if self._data_ends and not self._data_left:
            event.stream_ended = self._remote_end(stream, events)

    def _data_frame_start(self, sid: int, length: int, ends: bool) -> _Stream | None:
        """Flow control and stream state for a DATA frame; its stream, or None to drop it."""
        if not sid:
            raise ProtocolError("DATA frame on stream 0")
        if not self._settings_seen:
            raise ProtocolError("the peer's first frame was not SETTINGS")
        if length > self._in_window:
            raise ProtocolError(
                "DATA beyond the connection's window", ErrorCodes.FLOW_CONTROL_ERROR
            )
        self._in_window -= length
        stream = self.streams.get(sid)
        if stream is None:
            self._closed_stream_frame(sid, _DATA)
            return None
        if stream.recv_end or not stream.recv_headers:
            if not stream.recv_headers and not stream.recv_end:
                # DATA before the response (or request) headers: malformed.
                self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)
            else:
                self._stream_error(stream, ErrorCodes.STREAM_CLOSED)
            return None
        if length > stream.in_window:
            raise ProtocolError("DATA beyond the stream's window", ErrorCodes.FLOW_CONTROL_ERROR)
        stream.in_window -= length
        return stream

    def _after_payload(self, stream: _Stream, size: int) -> bool:
        """Count a DATA payload against a declared content-length; False if over."""
        stream.received += size
        if stream.content_length >= 0 and stream.received > stream.content_length:
            self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)
            return False
        return True

    def _remote_end(self, stream: _Stream, events: list[Any]) -> StreamEnded | None:
        """The peer ended its side of ``stream``."""
        if stream.content_length >= 0 and stream.received != stream.content_length:
            self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)
            return None
        stream.recv_end = True
        ended = StreamEnded(stream.id)
        events.append(ended)
        if stream.sent_end:
            self._close_stream(stream, _BY_END)
        return ended

    def _stream_error(self, stream: _Stream, code: int) -> None:
        """Reset a stream the peer broke the protocol on, and say so with an event."""
        self.reset_stream(stream.id, code)
        self._events.append(StreamReset(stream.id, code, remote_reset=False))

    def _closed_stream_frame(self, sid: int, ftype: int) -> None:
        """A DATA or HEADERS frame on a stream that is not open."""
        local = (sid % 2 == 1) == self.client_side
        highest = self.highest_outbound_stream_id if local else self.highest_inbound_stream_id
        if sid > highest:
            raise ProtocolError(f"frame on idle stream {sid}")
        # Not remembered: closed long ago, or implicitly (a higher id was opened).
        reason = self._closed_streams.get(sid, _BY_RECEIVED_RESET)
        if reason == _BY_SENT_RESET:
            return  # we reset it: frames in flight are ignored
        if reason == _BY_END:
            raise ProtocolError(f"frame on closed stream {sid}", ErrorCodes.STREAM_CLOSED)
        self._out += _frame(_RST_STREAM, 0, sid, _U32.pack(ErrorCodes.STREAM_CLOSED))

    def _on_frame(
        self, ftype: int, flags: int, sid: int, payload: memoryview, events: list[Any]
    ) -> None:
        """One whole frame other than an unpadded DATA frame."""
        if self._block and ftype != _CONTINUATION:
            raise ProtocolError("expected CONTINUATION")
        if not self._settings_seen and ftype != _SETTINGS:
            raise ProtocolError("the peer's first frame was not SETTINGS")
        if ftype == _HEADERS:
            self._on_headers(flags, sid, payload, events)
        elif ftype == _DATA:
            self._on_padded_data(flags, sid, payload, events)
        elif ftype == _CONTINUATION:
            self._on_continuation(flags, sid, payload, events)
        elif ftype == _SETTINGS:
            self._on_settings(flags, sid, payload, events)
        elif ftype == _WINDOW_UPDATE:
            self._on_window_update(sid, payload, events)
        elif ftype == _RST_STREAM:
            self._on_rst_stream(sid, payload, events)
        elif ftype == _PING:
            self._on_ping(flags, sid, payload, events)
        elif ftype == _GOAWAY:
            if sid:
                raise ProtocolError("GOAWAY on a stream")
            if len(payload) < 8:
                raise ProtocolError("GOAWAY too short", ErrorCodes.FRAME_SIZE_ERROR)
            last = int.from_bytes(payload[:4], "big") & _MAX_WINDOW
            code = int.from_bytes(payload[4:8], "big")
            events.append(ConnectionTerminated(code, last, bytes(payload[8:]) or None))
        elif ftype == _PRIORITY:
            if not sid:
                raise ProtocolError("PRIORITY on stream 0")
            if len(payload) != 5:
                raise ProtocolError("PRIORITY of the wrong size", ErrorCodes.FRAME_SIZE_ERROR)
            self._priority(sid, payload, events)
        elif ftype == _PUSH_PROMISE:
            if sid and len(payload) < 4 + (1 if flags & _PADDED else 0):
                raise ProtocolError("PUSH_PROMISE too short", ErrorCodes.FRAME_SIZE_ERROR)
            raise ProtocolError("PUSH_PROMISE received, though push is disabled")
        # Frames of unknown types are ignored.

    def _priority(self, sid: int, payload: memoryview, events: list[Any]) -> None:
        dep = int.from_bytes(payload[:4], "big")
        depends_on = dep & _MAX_WINDOW
        if depends_on == sid:
            stream = self.streams.get(sid)
            if stream is not None:
                self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)
                return
            raise ProtocolError(f"stream {sid} depends on itself")
        events.append(PriorityUpdated(sid, depends_on, payload[4] + 1, bool(dep >> 31)))

    def _on_padded_data(self, flags: int, sid: int, payload: memoryview, events: list[Any]) -> None:
        length = len(payload)
        if not length or payload[0] >= length:
            raise ProtocolError("invalid padding")
        stream = self._data_frame_start(sid, length, bool(flags & _END_STREAM))
        size = length - 1 - payload[0]
        if stream is None or (stream.content_length >= 0 and not self._after_payload(stream, size)):
            self._conn_processed(length)
            return
        event = DataReceived(sid, payload[1 : length - payload[0]], length)
        events.append(event)
        if flags & _END_STREAM:
            event.stream_ended = self._remote_end(stream, events)

    def _on_headers(self, flags: int, sid: int, payload: memoryview, events: list[Any]) -> None:
        if not sid:
            raise ProtocolError("HEADERS on stream 0")
        start = 0
        end = len(payload)
        if flags & _PADDED:
            if not end:
                raise ProtocolError("invalid padding")
            end -= payload[0]
            start = 1
        priority = None
        if flags & _PRIORITY_FLAG:
            start += 5
            priority = payload[start - 5 : start]
        if end < start:
            raise ProtocolError("invalid padding")
        block = payload[start:end]
        if flags & _END_HEADERS:
            self._header_block(sid, flags, block, priority, events)
        else:
            self._block = bytearray(block)
            self._block_sid = sid
            self._block_flags = flags
            self._block_priority = bytes(priority) if priority is not None else None

    def _on_continuation(
        self, flags: int, sid: int, payload: memoryview, events: list[Any]
    ) -> None:
        if not self._block or sid != self._block_sid:
            raise ProtocolError("unexpected CONTINUATION")
        self._block += payload
        if len(self._block) > 2 * self.local_settings.max_header_list_size + 65536:
            raise ProtocolError("header block too large", ErrorCodes.ENHANCE_YOUR_CALM)
        if flags & _END_HEADERS:
            block = bytes(self._block)
            self._block = bytearray()
            priority = self._block_priority
            self._header_block(
                sid,
                self._block_flags,
                memoryview(block),
                memoryview(priority) if priority is not None else None,
                events,
            )

    def _header_block(
        self, sid: int, flags: int, block: memoryview, priority: Any, events: list[Any]
    ) -> None:
        stream = self.streams.get(sid)
        # Decode first, whatever becomes of the stream: HPACK state is per connection.
        headers = self.decoder.decode(block)
        if stream is None:
            inbound = (sid % 2 == 1) != self.client_side
            if inbound and self.client_side:
                raise ProtocolError(f"HEADERS on stream {sid}, which the server cannot open")
            if not inbound or sid <= self.highest_inbound_stream_id:
                if sid in self._closed_streams or (
                    not inbound and sid <= self.highest_outbound_stream_id
                ):
                    self._closed_stream_frame(sid, _HEADERS)
                    return
                if inbound:
                    raise ProtocolError(f"stream id {sid} is lower than one already used")
                raise ProtocolError(f"HEADERS on stream {sid}, which the peer cannot open")
            self.highest_inbound_stream_id = sid
            stream = _Stream(
                sid,
                self.local_settings.initial_window_size,
                self.remote_settings.initial_window_size,
            )
            self.streams[sid] = stream
            self._open_inbound += 1
            if priority is not None and int.from_bytes(priority[:4], "big") & _MAX_WINDOW == sid:
                self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)
                return
            if self._open_inbound > self.local_settings.max_concurrent_streams:
                # A connection error, as h2 makes it (RFC 9113 asks for a stream
                # error): a peer that opens more streams than allowed is not served.
                raise ProtocolError(
                    f"stream {sid} is over the limit of "
                    f"{self.local_settings.max_concurrent_streams} concurrent streams"
                )
        elif stream.recv_end:
            self._stream_error(stream, ErrorCodes.STREAM_CLOSED)
            return
        elif priority is not None and int.from_bytes(priority[:4], "big") & _MAX_WINDOW == sid:
            self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)  # depends on itself (5.3.1)
            return
        ends = bool(flags & _END_STREAM)
        if not stream.recv_headers:
            if self.client_side:
                kind = _verdict(_validate_response, headers)
                if kind is InformationalResponseReceived and ends:
                    kind = None
            else:
                kind = _verdict(_validate_request, headers)
            if kind is None:
                self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)
                return
            if kind is not InformationalResponseReceived:
                stream.recv_headers = 1
                for name, value in headers:
                    if name == "content-length":
                        if not value.isdigit() or (
                            stream.content_length >= 0 and int(value) != stream.content_length
                        ):
                            self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)
                            return
                        stream.content_length = int(value)
                    elif name == "cookie":
                        headers = _join_cookies(headers)
                        break
            event = kind(sid, headers)
        else:
            if not ends or not _verdict(_valid_trailers, headers):
                self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)
                return
            stream.recv_headers += 1
            event = TrailersReceived(sid, headers)
        events.append(event)
        if priority is not None:
            dep = int.from_bytes(priority[:4], "big")
            event.priority_updated = PriorityUpdated(
                sid, dep & _MAX_WINDOW, priority[4] + 1, bool(dep >> 31)
            )
            events.append(event.priority_updated)
        if ends:
            event.stream_ended = self._remote_end(stream, events)

    def _on_settings(self, flags: int, sid: int, payload: memoryview, events: list[Any]) -> None:
        if sid:
            raise ProtocolError("SETTINGS on a stream")
        if flags & _ACK:
            if len(payload):
                raise ProtocolError("SETTINGS ACK with a payload", ErrorCodes.FRAME_SIZE_ERROR)
            applied = self._pending_settings.pop(0) if self._pending_settings else {}
            changed = {}
            local = self.local_settings
            for code, value in applied.items():
                changed[code] = ChangedSetting(code, local.get(code), value)
                if code == SettingCodes.INITIAL_WINDOW_SIZE:
                    delta = value - local.initial_window_size
                    for stream in self.streams.values():
                        stream.in_window += delta
                        stream.in_max += delta
                elif code == SettingCodes.MAX_FRAME_SIZE:
                    self.max_inbound_frame_size = value
                elif code == SettingCodes.HEADER_TABLE_SIZE:
                    self.decoder.max_table_size = value
                elif code == SettingCodes.MAX_HEADER_LIST_SIZE:
                    self.decoder.max_header_list_size = value
                local.set(code, value)
            events.append(SettingsAcknowledged(changed))
            return
        if len(payload) % 6:
            raise ProtocolError("SETTINGS of the wrong size", ErrorCodes.FRAME_SIZE_ERROR)
        self._settings_seen = True
        remote = self.remote_settings
        changed = {}
        pairs = [_SETTING.unpack_from(payload, pos) for pos in range(0, len(payload), 6)]
        for code, value in pairs:  # every value is checked before any applies
            _check_setting(code, value, self.client_side)
        for code, value in pairs:
            try:
                code = SettingCodes(code)
            except ValueError:
                continue  # unknown settings are ignored
            original = remote.get(code)
            if code == SettingCodes.INITIAL_WINDOW_SIZE:
                delta = value - remote.initial_window_size
                for stream in self.streams.values():
                    stream.out_window += delta
                    if stream.out_window > _MAX_WINDOW:
                        raise ProtocolError(
                            "window overflow from SETTINGS", ErrorCodes.FLOW_CONTROL_ERROR
                        )
            elif code == SettingCodes.MAX_FRAME_SIZE:
                self.max_outbound_frame_size = value
            elif code == SettingCodes.HEADER_TABLE_SIZE:
                self.encoder.peer_table_size(value)
            remote.set(code, value)
            changed[code] = ChangedSetting(code, original, value)
        self._out += b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"  # SETTINGS ACK
        events.append(RemoteSettingsChanged(changed))

    def _on_window_update(self, sid: int, payload: memoryview, events: list[Any]) -> None:
        if len(payload) != 4:
            raise ProtocolError("WINDOW_UPDATE of the wrong size", ErrorCodes.FRAME_SIZE_ERROR)
        increment = int.from_bytes(payload, "big") & _MAX_WINDOW
        if not sid:
            if not increment:
                raise ProtocolError("WINDOW_UPDATE of 0")
            self._out_window += increment
            if self._out_window > _MAX_WINDOW:
                raise ProtocolError("connection window overflow", ErrorCodes.FLOW_CONTROL_ERROR)
            events.append(WindowUpdated(0, increment))
            return
        stream = self.streams.get(sid)
        if stream is None:
            local = (sid % 2 == 1) == self.client_side
            highest = self.highest_outbound_stream_id if local else self.highest_inbound_stream_id
            if sid > highest:
                raise ProtocolError(f"WINDOW_UPDATE on idle stream {sid}")
            if not increment:
                raise ProtocolError("WINDOW_UPDATE of 0")
            return  # closed: a late update is harmless
        if not increment:
            self._stream_error(stream, ErrorCodes.PROTOCOL_ERROR)
            return
        stream.out_window += increment
        if stream.out_window > _MAX_WINDOW:
            self._stream_error(stream, ErrorCodes.FLOW_CONTROL_ERROR)
            return
        events.append(WindowUpdated(sid, increment))

    def _on_rst_stream(self, sid: int, payload: memoryview, events: list[Any]) -> None:
        if not sid:
            raise ProtocolError("RST_STREAM on stream 0")
        if len(payload) != 4:
            raise ProtocolError("RST_STREAM of the wrong size", ErrorCodes.FRAME_SIZE_ERROR)
        stream = self.streams.get(sid)
        if stream is None:
            local = (sid % 2 == 1) == self.client_side
            highest = self.highest_outbound_stream_id if local else self.highest_inbound_stream_id
            if sid > highest:
                raise ProtocolError(f"RST_STREAM on idle stream {sid}")
            return
        self._close_stream(stream, _BY_RECEIVED_RESET)
        events.append(StreamReset(sid, int.from_bytes(payload, "big")))

    def _on_ping(self, flags: int, sid: int, payload: memoryview, events: list[Any]) -> None:
        if sid:
            raise ProtocolError("PING on a stream")
        if len(payload) != 8:
            raise ProtocolError("PING of the wrong size", ErrorCodes.FRAME_SIZE_ERROR)
        data = bytes(payload)
        if flags & _ACK:
            events.append(PingAckReceived(data))
        else:
            self._out += _frame(_PING, _ACK, 0, data)
            events.append(PingReceived(data))


# -- header validation (RFC 9113 section 8.2 and 8.3) --------------------------


def _informational(headers: Any) -> bool:
    for name, value in headers:
        if name == ":status":
            return len(value) == 3 and value[0] == "1"
    return False


#: Field names already found valid (a bounded set), so a name seen on every
#: call is checked once.
_GOOD_NAMES: set[str] = set()


def _valid_field(name: str, value: str) -> bool:
    if name not in _GOOD_NAMES:
        if not name or name in _CONNECTION_HEADERS:
            return False
        if name == "te":
            if value != "trailers":
                return False
        else:
            raw = name[1:] if name[0] == ":" else name
            if not raw or not _NAME_OK.issuperset(raw.encode("latin-1", "replace")):
                return False
            if len(_GOOD_NAMES) < 1024:
                _GOOD_NAMES.add(name)
    return not value or not (
        value[0] in " \t" or value[-1] in " \t" or "\x00" in value or "\r" in value or "\n" in value
    )


#: Verdicts on header lists lately checked, by check and fields: a peer sends the
#: same heads and trailers call after call.
_VERDICTS: dict[tuple[Callable[..., Any], tuple[tuple[str, str], ...]], Any] = {}
_VERDICTS_LIMIT = 1024
_UNKNOWN = object()


def _verdict(check: Callable[[list[tuple[str, str]]], Any], headers: list[tuple[str, str]]) -> Any:
    """``check(headers)``, remembered for the same fields."""
    key = (check, tuple(headers))
    verdict = _VERDICTS.get(key, _UNKNOWN)
    if verdict is _UNKNOWN:
        verdict = check(headers)
        if len(_VERDICTS) >= _VERDICTS_LIMIT:
            _VERDICTS.clear()
        _VERDICTS[key] = verdict
    return verdict


def _validate_request(headers: list[tuple[str, str]]) -> type | None:
    """RequestReceived if the header block is a well-formed request, else None."""
    seen: set[str] = set()
    regular = False
    method = scheme = path = authority = host = None
    protocol = False
    for name, value in headers:
        if not _valid_field(name, value):
            return None
        if name[0] == ":":
            if regular or name in seen or name not in _REQUEST_PSEUDO:
                return None
            seen.add(name)
            if name == ":method":
                method = value
            elif name == ":scheme":
                scheme = value
            elif name == ":path":
                path = value
            elif name == ":authority":
                authority = value
            else:
                protocol = True
        else:
            regular = True
            if name == "host":
                host = value
    if method is None:
        return None
    if method == "CONNECT" and not protocol:
        if scheme is not None or path is not None or authority is None:
            return None
    elif scheme is None or not path:
        return None
    if authority is not None and host is not None and authority != host:
        return None
    return RequestReceived


def _validate_response(headers: list[tuple[str, str]]) -> type | None:
    status = None
    regular = False
    for name, value in headers:
        if not _valid_field(name, value):
            return None
        if name[0] == ":":
            if regular or name != ":status" or status is not None:
                return None
            status = value
        else:
            regular = True
    if status is None or len(status) != 3 or not status.isdigit() or status == "101":
        return None
    return InformationalResponseReceived if status[0] == "1" else ResponseReceived


def _valid_trailers(headers: list[tuple[str, str]]) -> bool:
    return all(name[:1] != ":" and _valid_field(name, value) for name, value in headers)


def _join_cookies(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    cookies = [value for name, value in headers if name == "cookie"]
    out = [(name, value) for name, value in headers if name != "cookie"]
    out.append(("cookie", "; ".join(cookies)))
    return out
