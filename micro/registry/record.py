"""The record a service registers: its endpoints, metadata and the address it is reached at.

:func:`service_record` describes a running service for discovery: each of its
endpoints with JSON schemas of what it takes and returns and its kind (and
whether it is idempotent, so clients may retry it), and one node, this
process, at the address :func:`advertised_address` picks. The service's
metadata is on its node too: instances of one version may differ (zone,
capacity) and clients filter by node.

Endpoints are taken as anything :class:`Described` (the server's
:class:`~micro.server.endpoint.Endpoint` is), and their schemas made by the
function given, so discovery does not depend on the server.

:func:`record_json` and :func:`record_from_json` are the record's JSON form,
one node per record, as the etcd and mDNS registries store it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from .base import EndpointInfo, Node, ServiceRecord

__all__ = [
    "Described",
    "Schema",
    "advertised_address",
    "endpoint_info",
    "host_address",
    "record_from_json",
    "record_json",
    "service_record",
]

#: a JSON schema of a type (``{}`` when none can be derived)
Schema = Callable[[Any], dict[str, Any]]


class Described(Protocol):
    """What the registry tells of an endpoint."""

    @property
    def name(self) -> str: ...
    @property
    def request_type(self) -> Any: ...
    @property
    def response_type(self) -> Any: ...
    @property
    def kind(self) -> str:
        """``unary``, ``server_stream``, ``client_stream`` or ``bidi_stream``."""
        ...

    @property
    def idempotent(self) -> bool: ...
    @property
    def metadata(self) -> Mapping[str, str]: ...


def endpoint_info(endpoint: Described, schema: Schema) -> EndpointInfo:
    """What the registry tells of one endpoint: its schemas, kind and metadata."""
    return EndpointInfo(
        name=endpoint.name,
        request=schema(endpoint.request_type),
        response=schema(endpoint.response_type),
        metadata={
            "kind": str(endpoint.kind),
            **({"idempotent": "true"} if endpoint.idempotent else {}),
            **endpoint.metadata,
        },
    )


def service_record(
    name: str,
    *,
    version: str,
    node: str,
    address: str,
    metadata: Mapping[str, str],
    endpoints: Iterable[Described],
    schema: Schema,
    internal: Iterable[str] = (),
) -> ServiceRecord:
    """The record of one node of service ``name`` serving ``endpoints`` at ``address``,
    with the schemas ``schema`` makes of their types.

    Endpoints of the handlers named in ``internal`` (health, debug, the broker's
    inbox: every service has them) are left out.
    """
    hidden = tuple(f"{handler}." for handler in internal)
    return ServiceRecord(
        name=name,
        version=version,
        metadata=dict(metadata),
        endpoints=tuple(
            endpoint_info(ep, schema) for ep in endpoints if not ep.name.startswith(hidden)
        ),
        nodes=(Node(id=node, address=address, metadata={**metadata, "protocol": "grpc"}),),
    )


def advertised_address(host: str, port: int, *, advertise: str | None = None) -> str:
    """The ``host:port`` other processes reach a listener bound to ``host`` and ``port`` by.

    ``advertise`` wins when given; a listener on every interface (``0.0.0.0``,
    ``::``) is advertised at :func:`host_address`.
    """
    if advertise is not None:
        return advertise
    if host in ("0.0.0.0", "::"):
        host = host_address()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def host_address() -> str:
    """The address other hosts reach this one by, for a service bound to every interface.

    ``MICRO_ADVERTISE_HOST`` wins; otherwise the first non-loopback IPv4 address
    the host name resolves to, else loopback. (No packet is sent to find it.)
    """
    override = os.environ.get("MICRO_ADVERTISE_HOST")
    if override:
        return override
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return "127.0.0.1"
    for info in infos:
        address = str(info[4][0])
        if not address.startswith("127."):
            return address
    return "127.0.0.1"


def record_json(service: ServiceRecord, node: Node) -> dict[str, Any]:
    """``service`` with ``node`` as its one node, as JSON-ready data."""
    return {
        "name": service.name,
        "version": service.version,
        "metadata": service.metadata,
        "endpoints": [
            {"name": e.name, "request": e.request, "response": e.response, "metadata": e.metadata}
            for e in service.endpoints
        ],
        "nodes": [{"id": node.id, "address": node.address, "metadata": node.metadata}],
    }


def record_from_json(data: dict[str, Any]) -> ServiceRecord:
    """The record :func:`record_json` made; raises KeyError, TypeError or AttributeError
    when ``data`` is not one."""
    return ServiceRecord(
        name=data["name"],
        version=data.get("version", "latest"),
        metadata=dict(data.get("metadata") or {}),
        endpoints=tuple(
            EndpointInfo(
                name=e["name"],
                request=dict(e.get("request") or {}),
                response=dict(e.get("response") or {}),
                metadata=dict(e.get("metadata") or {}),
            )
            for e in data.get("endpoints") or ()
        ),
        nodes=tuple(
            Node(id=n["id"], address=n["address"], metadata=dict(n.get("metadata") or {}))
            for n in data.get("nodes") or ()
        ),
    )
