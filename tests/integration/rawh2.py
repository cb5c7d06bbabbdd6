"""A bare HTTP/2 client on h2, for sending what micro's own client never would."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events


@dataclass
class RawResponse:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    reset: int | None = None


class RawH2:
    def __init__(self, net: anyio.abc.SocketStream) -> None:
        self.net = net
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()

    @classmethod
    async def connect(cls, address: str) -> RawH2:
        host, port = address.rsplit(":", 1)
        raw = cls(await anyio.connect_tcp(host, int(port)))
        await raw.flush()
        return raw

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.net.send(data)

    def start(
        self,
        path: str,
        content_type: str,
        extra: list[tuple[str, str]] | None = None,
        end_stream: bool = False,
    ) -> int:
        sid: int = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "t"),
                ("content-type", content_type),
                *(extra or []),
            ],
            end_stream=end_stream,
        )
        return sid

    async def response(self, sid: int) -> RawResponse:
        """Read until stream ``sid`` ends or is reset."""
        resp = RawResponse()
        while True:
            data = await self.net.receive()
            for ev in self.conn.receive_data(data):
                if getattr(ev, "stream_id", None) != sid:
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    resp.headers = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    resp.body += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.TrailersReceived):
                    resp.trailers = dict(ev.headers)
                elif isinstance(ev, h2.events.StreamReset):
                    resp.reset = ev.error_code
                    return resp
                elif isinstance(ev, h2.events.StreamEnded):
                    await self.flush()
                    return resp
            await self.flush()

    async def aclose(self) -> None:
        await self.net.aclose()
