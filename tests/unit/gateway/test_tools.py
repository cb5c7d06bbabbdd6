"""Registry records as MCP tools: names, patterns, schemas, descriptions (no network)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

import micro
from micro.gateway.tools import (
    TOOL_NAME_MAX,
    McpOptions,
    matches,
    patterns,
    tool_name,
    tools_from_records,
)
from micro.registry.base import EndpointInfo, ServiceRecord
from micro.server.endpoint import endpoints_of
from micro.server.schema import json_schema

ALLOWED = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@dataclass
class Req:
    name: str


@dataclass
class Resp:
    message: str


class Greeter:
    async def hello(self, req: Req) -> Resp:
        """Say hello to someone.

        Parameters:
            name: who to greet.
        """
        return Resp(f"Hello {req.name}")

    async def count(self, req: Req) -> AsyncIterator[Resp]:
        yield Resp("1")

    async def chat(self, reqs: AsyncIterator[Req]) -> AsyncIterator[Resp]:
        async for r in reqs:
            yield Resp(r.name)

    async def echo(self, req: bytes) -> bytes:
        return req

    @micro.endpoint(idempotent=True, metadata={"description": "Given by hand."})
    async def get(self, req: Req) -> list[int]:
        """Not this one: the metadata given wins."""
        return []


def record(service: str = "greeter", version: str = "latest") -> ServiceRecord:
    endpoints = tuple(
        EndpointInfo(
            name=ep.name,
            request=json_schema(ep.request_type),
            response=json_schema(ep.response_type),
            metadata={
                "kind": ep.kind.value,
                **({"idempotent": "true"} if ep.idempotent else {}),
                **ep.metadata,
            },
        )
        for ep in endpoints_of(Greeter())
    )
    return ServiceRecord(service, version, endpoints=endpoints)


def test_docstrings_are_endpoint_descriptions() -> None:
    eps = {ep.name: ep for ep in endpoints_of(Greeter())}
    assert eps["Greeter.Hello"].metadata["description"] == (
        "Say hello to someone.\n\nParameters:\n    name: who to greet."
    )
    assert "description" not in eps["Greeter.Count"].metadata
    assert eps["Greeter.Get"].metadata["description"] == "Given by hand."


def test_tool_names_are_stable_and_allowed() -> None:
    assert tool_name("greeter", "Greeter.Hello") == "greeter.Greeter.Hello"
    assert tool_name("my service/v2", "Greeter.Hello") == "my_service_v2.Greeter.Hello"
    assert tool_name("сервис", "Greeter.Hello") == "______.Greeter.Hello"
    long = tool_name("x" * 80, "Greeter.Hello")
    assert len(long) == TOOL_NAME_MAX
    assert ALLOWED.match(long)
    assert long == tool_name("x" * 80, "Greeter.Hello")
    # Names that differ only past the cut stay apart.
    assert long != tool_name("x" * 80, "Greeter.Bye")


def test_every_offered_kind_becomes_a_tool() -> None:
    tools = tools_from_records([record()])
    assert list(tools) == [
        "greeter.Greeter.Count",
        "greeter.Greeter.Echo",
        "greeter.Greeter.Get",
        "greeter.Greeter.Hello",
    ]  # Chat streams requests: not offered
    hello = tools["greeter.Greeter.Hello"]
    assert hello.description.startswith("Say hello to someone.")
    assert hello.input_schema["type"] == "object"
    assert hello.input_schema["required"] == ["name"]
    assert hello.output_schema is not None and hello.output_schema["title"] == "Resp"
    count = tools["greeter.Greeter.Count"]
    assert count.kind == "server_stream"
    assert count.description.startswith("Calls Greeter.Count of the greeter service.")
    assert count.output_schema is not None
    messages = count.output_schema["properties"]["messages"]
    # The message type's definitions sit at the root, where its $ref points.
    ref = messages["items"]["$ref"]
    assert ref.startswith("#/$defs/")
    assert ref.removeprefix("#/$defs/") in count.output_schema["$defs"]


def test_requests_and_responses_that_are_not_objects_are_wrapped() -> None:
    tools = tools_from_records([record()])
    echo = tools["greeter.Greeter.Echo"]
    assert echo.wraps_request and echo.wraps_result
    assert echo.input_schema["required"] == ["request"]
    assert echo.input_schema["properties"]["request"]["type"] == "string"
    get = tools["greeter.Greeter.Get"]
    assert not get.wraps_request and get.wraps_result
    assert get.idempotent
    assert get.output_schema is not None
    assert get.output_schema["properties"]["result"]["type"] == "array"


def test_expose_and_hide_patterns() -> None:
    records = [record("greeter"), record("billing")]
    tools = tools_from_records(records, expose=("billing.*",), hide=("*.Greeter.Get",))
    assert list(tools) == [
        "billing.Greeter.Count",
        "billing.Greeter.Echo",
        "billing.Greeter.Hello",
    ]
    assert matches("svc.Admin.Drop", ("svc.*",), ("svc.Admin*",)) is False
    assert matches("svc.User.Get", ("svc.*",), ("svc.Admin*",)) is True
    assert patterns(["a.*, b.*", "", "c.Admin*"]) == ("a.*", "b.*", "c.Admin*")


def test_the_newest_version_describes_an_endpoint() -> None:
    old = ServiceRecord("greeter", "1.0", endpoints=(EndpointInfo("Greeter.Hello", {}, {}),))
    new = ServiceRecord(
        "greeter",
        "2.0",
        endpoints=(EndpointInfo("Greeter.Hello", {}, {}, {"description": "v2"}),),
    )
    assert tools_from_records([new, old])["greeter.Greeter.Hello"].description == "v2"
    assert tools_from_records([old, new])["greeter.Greeter.Hello"].description == "v2"


def test_options_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_stream_messages"):
        McpOptions(max_stream_messages=0)
    with pytest.raises(ValueError, match="timeout"):
        McpOptions(timeout=-1)
    with pytest.raises(ValueError, match="progress_interval"):
        McpOptions(progress_interval=0)
