"""The record a service registers, and the address it advertises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

import micro
from micro.registry.record import advertised_address, service_record
from micro.server.schema import json_schema
from micro.server.server import Server


@dataclass
class Req:
    name: str


@dataclass
class Resp:
    message: str


class Greeter:
    async def hello(self, req: Req) -> Resp:
        return Resp(f"hello {req.name}")

    @micro.endpoint(idempotent=True, metadata={"owner": "team-a"})
    async def count(self, req: Req) -> AsyncIterator[Resp]:
        yield Resp(req.name)


class Internal:
    async def ping(self, req: Req) -> Resp:
        return Resp("pong")


def test_the_record_describes_each_endpoint_and_one_node() -> None:
    server = Server("greeter")
    server.handle(Greeter())
    server.handle(Internal(), name="Internal")
    record = service_record(
        "greeter",
        version="1.2",
        node="greeter-1",
        address="10.0.0.5:8080",
        metadata={"zone": "a"},
        endpoints=server.router.endpoints(),
        schema=json_schema,
        internal=("Internal",),
    )
    assert record.name == "greeter"
    assert record.version == "1.2"
    assert record.metadata == {"zone": "a"}
    endpoints = {ep.name: ep for ep in record.endpoints}
    assert set(endpoints) == {"Greeter.Hello", "Greeter.Count"}
    assert endpoints["Greeter.Hello"].metadata == {"kind": "unary"}
    assert endpoints["Greeter.Count"].metadata == {
        "kind": "server_stream",
        "idempotent": "true",
        "owner": "team-a",
    }
    assert endpoints["Greeter.Hello"].request == json_schema(Req) != {}
    assert endpoints["Greeter.Hello"].response == json_schema(Resp) != {}
    [node] = record.nodes
    assert node.id == "greeter-1"
    assert node.address == "10.0.0.5:8080"
    assert node.metadata == {"zone": "a", "protocol": "grpc"}


def test_an_address_given_to_advertise_wins() -> None:
    assert advertised_address("127.0.0.1", 8080, advertise="svc.example:443") == "svc.example:443"


def test_a_bound_host_is_advertised_as_it_is() -> None:
    assert advertised_address("127.0.0.1", 8080) == "127.0.0.1:8080"
    assert advertised_address("::1", 8080) == "[::1]:8080"


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_every_interface_is_advertised_at_the_host_address(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICRO_ADVERTISE_HOST", "192.0.2.7")
    assert advertised_address(host, 8080) == "192.0.2.7:8080"
    monkeypatch.setenv("MICRO_ADVERTISE_HOST", "2001:db8::7")
    assert advertised_address(host, 8080) == "[2001:db8::7]:8080"
