"""Health checking: the standard ``grpc.health.v1.Health`` service on every service.

Standard probes (``grpc_health_probe``, Kubernetes gRPC probes, load
balancers) call ``/grpc.health.v1.Health/Check`` and ``/Watch``. The service
name ``""`` means the whole server: SERVING while the service runs and
NOT_SERVING once it starts draining. Handlers may report per-service states
with :meth:`HealthStatus.set`.

The two messages are tiny, so they are encoded here by hand (protobuf wire
format: field 1, a string in the request and an enum in the response) and
micro needs no generated code or protobuf runtime to answer probes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from enum import IntEnum

import anyio

from ..errors import BadRequest, NotFound

__all__ = [
    "HEALTH_SERVICE_NAME",
    "HealthService",
    "HealthStatus",
    "ServingStatus",
    "decode_request",
    "decode_response",
    "encode_response",
]

HEALTH_SERVICE_NAME = "grpc.health.v1.Health"


class ServingStatus(IntEnum):
    UNKNOWN = 0
    SERVING = 1
    NOT_SERVING = 2
    SERVICE_UNKNOWN = 3  # only in Watch responses


class HealthStatus:
    """The serving status of the server (``""``) and of named services."""

    def __init__(self) -> None:
        self._status: dict[str, ServingStatus] = {"": ServingStatus.NOT_SERVING}
        # Created by the first watcher, inside its event loop.
        self._changed: anyio.Event | None = None

    def get(self, service: str = "") -> ServingStatus | None:
        return self._status.get(service)

    def set(self, service: str, status: ServingStatus) -> None:
        if self._status.get(service) == status:
            return
        self._status[service] = status
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    async def changes(self, service: str) -> AsyncIterator[ServingStatus]:
        """The current status of ``service``, then each change (SERVICE_UNKNOWN if absent)."""
        last: ServingStatus | None = None
        while True:
            if self._changed is None:
                self._changed = anyio.Event()
            changed = self._changed
            now = self._status.get(service, ServingStatus.SERVICE_UNKNOWN)
            if now != last:
                last = now
                yield now
            await changed.wait()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise BadRequest("malformed protobuf varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def decode_request(data: bytes | memoryview) -> str:
    """The ``service`` field of a HealthCheckRequest (unknown fields skipped)."""
    data = bytes(data)
    pos = 0
    service = ""
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise BadRequest("truncated protobuf field")
            if field == 1:
                try:
                    service = data[pos : pos + length].decode()
                except UnicodeDecodeError:
                    raise BadRequest("service name is not UTF-8") from None
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise BadRequest(f"unsupported protobuf wire type {wire}")
    return service


def encode_response(status: ServingStatus) -> bytes:
    """A HealthCheckResponse (``status`` omitted when 0, as proto3 does)."""
    return b"\x08" + _varint(int(status)) if status else b""


def decode_response(data: bytes | memoryview) -> ServingStatus:
    """The ``status`` of a HealthCheckResponse (what a probe of another service reads)."""
    data = bytes(data)
    pos = 0
    status = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        if key & 7 != 0:
            raise BadRequest("unexpected field in a health check response")
        value, pos = _read_varint(data, pos)
        if key >> 3 == 1:
            status = value
    try:
        return ServingStatus(status)
    except ValueError:
        return ServingStatus.UNKNOWN


class HealthService:
    """The handler for ``grpc.health.v1.Health`` (served with ``application/grpc``)."""

    def __init__(
        self, status: HealthStatus, refresh: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        self._status = status
        #: brings the statuses up to date (runs the readiness checks) before a Check
        self.refresh = refresh

    async def check(self, req: bytes) -> bytes:
        service = decode_request(req)
        if self.refresh is not None:
            await self.refresh()
        status = self._status.get(service)
        if status is None:
            raise NotFound(f"unknown service {service!r}")
        return encode_response(status)

    async def watch(self, req: bytes) -> AsyncIterator[bytes]:
        service = decode_request(req)
        async for status in self._status.changes(service):
            yield encode_response(status)
