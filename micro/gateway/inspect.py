"""What the dashboard and the ``micro`` command show: registry records as JSON, node health.

Both read the same registry records (services, versions, nodes, endpoints
with the JSON schemas of their request and response types) and probe each
node with the standard ``grpc.health.v1.Health/Check``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..client.client import Client
from ..errors import MicroError
from ..health import HEALTH_SERVICE_NAME, ServingStatus, decode_response
from ..observability.stats import DEBUG_NAME
from ..registry.base import Registry, ServiceRecord

__all__ = [
    "NodeHealth",
    "check_health",
    "list_services",
    "readable_schema",
    "record_json",
    "service_json",
]

#: seconds one node may take to answer a health check
HEALTH_TIMEOUT = 3.0


def record_json(record: ServiceRecord) -> dict[str, Any]:
    """One service version as JSON: metadata, nodes, endpoints with their schemas."""
    return {
        "name": record.name,
        "version": record.version,
        "metadata": dict(record.metadata),
        "nodes": [
            {"id": n.id, "address": n.address, "metadata": dict(n.metadata)} for n in record.nodes
        ],
        "endpoints": [
            {
                "name": e.name,
                "request": e.request,
                "response": e.response,
                "metadata": dict(e.metadata),
                "description": e.metadata.get("description", ""),
            }
            for e in record.endpoints
        ],
    }


def readable_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its top-level ``$ref`` resolved, for people to read.

    msgspec and pydantic put a named type in ``$defs`` and refer to it; the
    referenced definition is shown in its place (other definitions kept).
    """
    ref = schema.get("$ref")
    defs = schema.get("$defs")
    prefix = "#/$defs/"
    if not isinstance(ref, str) or not ref.startswith(prefix) or not isinstance(defs, dict):
        return schema
    rest = {k: v for k, v in defs.items() if k != ref[len(prefix) :]}
    resolved = dict(defs.get(ref[len(prefix) :], {}))
    if rest:
        resolved["$defs"] = rest
    return resolved


async def service_json(registry: Registry, name: str) -> list[dict[str, Any]]:
    """Every version of ``name`` as :func:`record_json`; raises ServiceNotFound."""
    records = await registry.get_service(name)
    return [record_json(r) for r in sorted(records, key=lambda r: r.version)]


async def list_services(registry: Registry) -> list[dict[str, Any]]:
    """Every registered service: name, versions and node count, sorted by name."""
    by_name: dict[str, dict[str, Any]] = {}
    for record in await registry.list_services():
        entry = by_name.setdefault(record.name, {"name": record.name, "versions": [], "nodes": 0})
        if record.version not in entry["versions"]:
            entry["versions"].append(record.version)
    for entry in by_name.values():
        # list_services may omit nodes; get_service has them.
        try:
            records = await registry.get_service(entry["name"])
        except MicroError:
            continue
        entry["nodes"] = sum(len(r.nodes) for r in records)
        entry["versions"] = sorted({r.version for r in records} | set(entry["versions"]))
    return [by_name[name] for name in sorted(by_name)]


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """The answer of one node to a health check."""

    node: str
    address: str
    version: str
    status: str  # SERVING, NOT_SERVING, UNKNOWN, or UNREACHABLE
    detail: str = ""
    #: the node's ``micro.Debug.Stats`` (uptime, requests, errors, memory, tasks, ...),
    #: empty when it could not be read
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def serving(self) -> bool:
        return self.status == ServingStatus.SERVING.name


async def check_health(
    client: Client, name: str, *, metadata: Mapping[str, str] | None = None
) -> list[NodeHealth]:
    """Ask every node of ``name`` for its health, concurrently; raises ServiceNotFound.

    ``metadata`` goes with the calls (the caller's ``authorization``, to read the
    debug stats of a service with auth on).
    """
    sent = dict(metadata or {})
    async with client.registry:
        records = await client.registry.get_service(name)
    nodes = [(r.version, n) for r in records for n in r.nodes]
    results: list[NodeHealth | None] = [None] * len(nodes)

    async def check(i: int, version: str, node_id: str, address: str) -> None:
        try:
            data = await client.call(
                name,
                f"{HEALTH_SERVICE_NAME}.Check",
                b"",
                bytes,
                address=address,
                content_type="application/grpc",
                timeout=HEALTH_TIMEOUT,
                retries=0,
            )
        except MicroError as exc:
            results[i] = NodeHealth(node_id, address, version, "UNREACHABLE", exc.detail)
            return
        status = decode_response(data)
        try:
            stats = await client.call(
                name,
                f"{DEBUG_NAME}.Stats",
                {},
                dict,
                address=address,
                metadata=sent,
                timeout=HEALTH_TIMEOUT,
                retries=0,
            )
        except MicroError:
            stats = {}  # an older node, or one that does not let this caller read them
        results[i] = NodeHealth(node_id, address, version, status.name, stats=stats)

    async with anyio.create_task_group() as tg:
        for i, (version, node) in enumerate(nodes):
            tg.start_soon(check, i, version, node.id, node.address)
    return [r for r in results if r is not None]
