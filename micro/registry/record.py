"""The record a service registers: its endpoints, metadata and the address it is reached at.

:func:`service_record` describes a running service for discovery: each of its
endpoints with JSON schemas of what it takes and returns and its kind (and
whether it is idempotent, so clients may retry it), and one node, this
process, at the address :func:`advertised_address` picks. The service's
metadata is on its node too: instances of one version may differ (zone,
capacity) and clients filter by node.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ..server.schema import json_schema
from ..transport.listener import parse_address
from .base import EndpointInfo, Node, ServiceRecord

if TYPE_CHECKING:
    from ..server.endpoint import Endpoint

__all__ = ["advertised_address", "endpoint_info", "host_address", "service_record"]


def endpoint_info(endpoint: Endpoint) -> EndpointInfo:
    """What the registry tells of one endpoint: its schemas, kind and metadata."""
    return EndpointInfo(
        name=endpoint.name,
        request=json_schema(endpoint.request_type),
        response=json_schema(endpoint.response_type),
        metadata={
            "kind": endpoint.kind.value,
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
    endpoints: Iterable[Endpoint],
    internal: Iterable[str] = (),
) -> ServiceRecord:
    """The record of one node of service ``name`` serving ``endpoints`` at ``address``.

    Endpoints of the handlers named in ``internal`` (health, debug, the broker's
    inbox: every service has them) are left out.
    """
    hidden = tuple(f"{handler}." for handler in internal)
    return ServiceRecord(
        name=name,
        version=version,
        metadata=dict(metadata),
        endpoints=tuple(endpoint_info(ep) for ep in endpoints if not ep.name.startswith(hidden)),
        nodes=(Node(id=node, address=address, metadata={**metadata, "protocol": "grpc"}),),
    )


def advertised_address(bound: str, *, advertise: str | None = None) -> str:
    """The ``host:port`` other processes reach a listener bound to ``bound`` by.

    ``advertise`` wins when given; a listener on every interface (``0.0.0.0``,
    ``::``) is advertised at :func:`host_address`.
    """
    host, port = parse_address(bound)
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
