"""grpc.health.v1 on every service, for standard probes."""

from __future__ import annotations

import anyio
import grpc
import pytest

import micro
from micro.health import ServingStatus, decode_request, encode_response
from micro.registry import MemoryRegistry

from ..conftest import Greeter

pytestmark = pytest.mark.anyio

SERVING = b"\x08\x01"
NOT_SERVING = b"\x08\x02"
SERVICE_UNKNOWN = b"\x08\x03"


def _request(service: str) -> bytes:
    data = service.encode()
    return b"\x0a" + bytes([len(data)]) + data if data else b""


def _grpcio_check(address: str, service: str) -> bytes:
    with grpc.insecure_channel(address) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        result: bytes = check(_request(service), timeout=10)
        return result


async def test_grpcio_probe_sees_serving(registry: MemoryRegistry) -> None:
    service = micro.Service("probed", address="127.0.0.1:0", registry=registry)
    service.handle(Greeter())
    async with service.running():
        assert await anyio.to_thread.run_sync(_grpcio_check, service.address, "") == SERVING
        assert await anyio.to_thread.run_sync(_grpcio_check, service.address, "probed") == SERVING
        with pytest.raises(grpc.RpcError) as info:
            await anyio.to_thread.run_sync(_grpcio_check, service.address, "nope")
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_watch_reports_changes_and_draining(registry: MemoryRegistry) -> None:
    service = micro.Service("watched", address="127.0.0.1:0", registry=registry, grace_period=5)
    service.handle(Greeter())
    seen: list[bytes] = []
    async with micro.Client(registry=registry) as client:
        async with service.running():
            async with client.stream(
                "watched",
                "grpc.health.v1.Health.Watch",
                _request("worker"),
                bytes,
                content_type="application/grpc",
            ) as s:
                seen.append(await s.receive())
                service.health.set("worker", ServingStatus.SERVING)
                seen.append(await s.receive())
                service.health.set("worker", ServingStatus.NOT_SERVING)
                seen.append(await s.receive())
            # The whole server reports NOT_SERVING as soon as shutdown begins.
            status = await client.call(
                "watched",
                "grpc.health.v1.Health.Check",
                b"",
                bytes,
                content_type="application/grpc",
            )
            assert status == SERVING
            assert service.health.get("") == ServingStatus.SERVING
        assert service.health.get("") == ServingStatus.NOT_SERVING
    assert seen == [SERVICE_UNKNOWN, SERVING, NOT_SERVING]


def test_health_messages_round_trip() -> None:
    assert decode_request(_request("svc")) == "svc"
    assert decode_request(b"") == ""
    assert decode_request(b"\x10\x05" + _request("x")) == "x"  # unknown varint field skipped
    assert encode_response(ServingStatus.UNKNOWN) == b""
    assert encode_response(ServingStatus.SERVING) == SERVING
    with pytest.raises(micro.BadRequest):
        decode_request(b"\x0a\x09ab")
