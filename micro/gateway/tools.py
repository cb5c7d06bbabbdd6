"""Registry records as tools an agent can call: names, descriptions, schemas.

Every endpoint of every registered service becomes one tool, with no code per
service:

- its name is ``<service>.<Handler>.<Method>`` (as Go Micro names them), with
  any character MCP does not allow in a tool name replaced by ``_``; a name
  longer than :data:`TOOL_NAME_MAX` keeps its start and ends in a hash of the
  whole, so it stays the same from run to run;
- its description is the handler method's docstring, which the service puts
  in the endpoint's registry metadata (``description``);
- its input schema is the JSON schema of the request type (what ``micro
  describe`` shows), its output schema that of the response type where it is
  an object. A request or response that is not an object (``bytes``, a list,
  a number) is carried in a ``request`` / ``result`` property, since MCP tools
  take and give objects;
- a server stream returns the messages it sent, collected up to a bound, as
  ``{"messages": [...], "truncated": bool}``; client and bidirectional streams
  need a caller that keeps sending, so they are not offered.

``expose`` and ``hide`` are shell-style patterns over ``service.Handler.Method``
(``greeter.*``, ``billing.Admin.*``): a tool is offered when it matches an
``expose`` pattern and no ``hide`` pattern. This module is pure: it only
reads records.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..registry.base import EndpointInfo, ServiceRecord
from .inspect import readable_schema

__all__ = [
    "TOOL_NAME_MAX",
    "McpOptions",
    "ServiceTool",
    "matches",
    "patterns",
    "tool_name",
    "tools_from_records",
]

#: longest tool name: MCP allows 128, but common agent hosts take 64 at most
TOOL_NAME_MAX = 64

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_.\-]")
_HASH_CHARS = 8

#: call kinds offered as tools
_OFFERED_KINDS = ("unary", "server_stream")


@dataclass(frozen=True, slots=True)
class McpOptions:
    """What the MCP server offers and how it calls.

    ``expose``/``hide``: patterns over ``service.Handler.Method``; ``token``:
    the bearer token calls carry when the caller brings none; ``timeout``:
    seconds a call (or a stream's collection) may take; ``max_stream_messages``:
    messages a server stream returns at most; ``progress_interval``: seconds
    between the progress reports of a unary call; ``allowed_origins``: the
    browser origins (``Origin`` header, such as ``https://app.example.com``) the
    Streamable HTTP endpoint answers, ``"*"`` for any. A request from any other
    origin is refused (403): a web page the user visits cannot call the tools,
    not even through a DNS name rebound to this host. Agents, which send no
    ``Origin``, are answered.
    """

    expose: tuple[str, ...] = ("*",)
    hide: tuple[str, ...] = ()
    token: str | None = None
    timeout: float | None = 30.0
    max_stream_messages: int = 100
    #: seconds between the progress reports of a unary call, for a client that
    #: asked for progress (hosts may restart their own timeout on each)
    progress_interval: float = 5.0
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.progress_interval <= 0:
            raise ValueError("progress_interval must be positive")
        if self.max_stream_messages < 1:
            raise ValueError("max_stream_messages must be at least 1")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive (or None for no bound)")


@dataclass(frozen=True, slots=True)
class ServiceTool:
    """One endpoint of one service, as a tool."""

    name: str
    service: str
    endpoint: str
    #: ``unary`` or ``server_stream``
    kind: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None
    #: the request is not an object: the tool's ``request`` argument is the request
    wraps_request: bool = False
    #: the response is not an object: it is the ``result`` of the structured content
    wraps_result: bool = False
    idempotent: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def qualified(self) -> str:
        """``service.Handler.Method``: what ``expose`` and ``hide`` patterns match."""
        return f"{self.service}.{self.endpoint}"


def tool_name(service: str, endpoint: str) -> str:
    """The stable MCP tool name of ``endpoint`` of ``service``."""
    full = f"{service}.{endpoint}"
    name = _NOT_ALLOWED.sub("_", full)
    if len(name) <= TOOL_NAME_MAX:
        return name
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_CHARS]
    return f"{name[: TOOL_NAME_MAX - _HASH_CHARS - 1]}_{digest}"


def matches(qualified: str, expose: Sequence[str], hide: Sequence[str]) -> bool:
    """Whether ``service.Handler.Method`` is offered under these patterns."""
    if not any(fnmatch.fnmatchcase(qualified, p) for p in expose):
        return False
    return not any(fnmatch.fnmatchcase(qualified, p) for p in hide)


def tools_from_records(
    records: Iterable[ServiceRecord],
    *,
    expose: Sequence[str] = ("*",),
    hide: Sequence[str] = (),
    max_stream_messages: int = 100,
) -> dict[str, ServiceTool]:
    """The tools of ``records`` by name, sorted by name.

    When a service runs in several versions, the newest version (by name)
    that has the endpoint describes it; calls go to any node.
    """
    found: dict[str, ServiceTool] = {}
    for record in sorted(records, key=lambda r: (r.name, r.version), reverse=True):
        for info in record.endpoints:
            kind = info.metadata.get("kind", "unary")
            if kind not in _OFFERED_KINDS:
                continue
            qualified = f"{record.name}.{info.name}"
            if not matches(qualified, expose, hide):
                continue
            name = tool_name(record.name, info.name)
            if name not in found:
                found[name] = _tool(name, record.name, info, kind, max_stream_messages)
    return dict(sorted(found.items()))


def _tool(
    name: str, service: str, info: EndpointInfo, kind: str, max_stream_messages: int
) -> ServiceTool:
    input_schema, wraps_request = _object_schema(info.request, "request")
    result_schema, wraps_result = _object_schema(info.response, "result")
    output: dict[str, Any] | None = result_schema if info.response else None
    description = info.metadata.get("description", "").strip() or (
        f"Calls {info.name} of the {service} service."
    )
    if kind == "server_stream":
        output = _stream_output(info.response if info.response else {})
        description += (
            f"\n\nStreams its answer: the result is the messages sent, at most "
            f"{max_stream_messages}, as {{messages, truncated}}."
        )
        wraps_result = False
    return ServiceTool(
        name=name,
        service=service,
        endpoint=info.name,
        kind=kind,
        description=description,
        input_schema=input_schema,
        output_schema=output,
        wraps_request=wraps_request,
        wraps_result=wraps_result,
        idempotent=info.metadata.get("idempotent") == "true",
        metadata=dict(info.metadata),
    )


def _object_schema(schema: dict[str, Any], wrapper: str) -> tuple[dict[str, Any], bool]:
    """``schema`` as the object schema MCP wants, and whether it had to be wrapped."""
    if not schema:
        return {"type": "object"}, False
    resolved = readable_schema(schema)
    if resolved.get("type") == "object":
        return resolved, False
    inner, defs = _split_defs(resolved)
    wrapped: dict[str, Any] = {
        "type": "object",
        "properties": {wrapper: inner},
        "required": [wrapper],
    }
    if defs:
        wrapped["$defs"] = defs
    return wrapped, True


def _stream_output(schema: dict[str, Any]) -> dict[str, Any]:
    items, defs = _split_defs(schema)
    out: dict[str, Any] = {
        "type": "object",
        "properties": {
            "messages": {"type": "array", "items": items} if items else {"type": "array"},
            "truncated": {
                "type": "boolean",
                "description": "the stream had more messages than were collected",
            },
        },
        "required": ["messages", "truncated"],
    }
    if defs:
        out["$defs"] = defs
    return out


def _split_defs(schema: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``schema`` without its ``$defs``, and the ``$defs`` (which must sit at the root)."""
    defs = schema.get("$defs")
    if not isinstance(defs, dict):
        return schema, {}
    return {k: v for k, v in schema.items() if k != "$defs"}, defs


def patterns(values: Sequence[str]) -> tuple[str, ...]:
    """Patterns given as repeated options or comma-separated lists."""
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())
