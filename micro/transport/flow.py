"""Sending within HTTP/2 flow control, shared by the server and client drivers.

A body larger than the peer's window (or than its largest frame) goes out in
pieces; when the window is shut, the sender waits on an event that the
driver's reader sets when a WINDOW_UPDATE (or new SETTINGS) arrives, or when
the stream or connection goes away.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from .h2conn import H2Connection

__all__ = ["OutboundFlow"]


class OutboundFlow:
    def __init__(self, conn: H2Connection, wake_writer: Callable[[], None]) -> None:
        self._conn = conn
        self._wake_writer = wake_writer
        self._waiters: dict[int, anyio.Event] = {}

    async def send(
        self, sid: int, data: bytes, *, end_stream: bool, stop: Callable[[], bool]
    ) -> bool:
        """Queue ``data`` on stream ``sid``, waiting for window as needed.

        Returns False, with the rest unsent, if ``stop()`` turns true while waiting.
        """
        conn = self._conn
        view: bytes | memoryview = data
        while True:
            size = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(view))
            if size == len(view):
                conn.send_data(sid, view, end_stream=end_stream)
                return True
            if size > 0:
                if not isinstance(view, memoryview):
                    view = memoryview(view)
                conn.send_data(sid, view[:size])
                view = view[size:]
                continue
            waiter = self._waiters[sid] = anyio.Event()
            self._wake_writer()  # let what is queued go, so the peer can answer with window
            await waiter.wait()
            if stop():
                return False

    def window_opened(self, stream_id: int) -> None:
        """A WINDOW_UPDATE arrived: for one stream, or (0) for the connection."""
        if stream_id == 0:
            self.wake_all()
        else:
            self.stream_gone(stream_id)

    def stream_gone(self, stream_id: int) -> None:
        """Wake the sender of one stream (its window opened, or the stream ended)."""
        waiter = self._waiters.pop(stream_id, None)
        if waiter is not None:
            waiter.set()

    def wake_all(self) -> None:
        waiters = list(self._waiters.values())
        self._waiters.clear()
        for waiter in waiters:
            waiter.set()
