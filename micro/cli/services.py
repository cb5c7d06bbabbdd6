"""``micro services``, ``micro describe`` and ``micro health``: what runs, and how it is."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ..client.client import Client
from ..gateway.inspect import check_health, list_services, readable_schema, service_json
from ..registry import resolve_registry
from ._app import app, fail, print_json, run, state, stdout

__all__ = ["describe", "health", "services"]


@app.command()
def services(
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """List registered services with their versions and node counts."""

    async def main() -> list[dict[str, object]]:
        registry = resolve_registry(state.registry)
        async with registry:
            return await list_services(registry)

    found = run(main)
    if as_json:
        print_json(found)
        return
    table = Table("SERVICE", "VERSIONS", "NODES", box=None, pad_edge=False)
    for s in found:
        versions = s["versions"]
        assert isinstance(versions, list)
        table.add_row(escape(str(s["name"])), escape(", ".join(versions)), str(s["nodes"]))
    stdout.print(table)


@app.command()
def describe(
    service: str = typer.Argument(..., help="service name"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Show a service's versions, nodes and endpoints with their request/response schemas."""

    async def main() -> list[dict[str, Any]]:
        registry = resolve_registry(state.registry)
        async with registry:
            return await service_json(registry, service)

    versions = run(main)
    if as_json:
        print_json(versions)
        return
    for v in versions:
        stdout.print(f"[bold]{escape(v['name'])}[/bold] version {escape(v['version'])}")
        nodes = Table("NODE", "ADDRESS", "METADATA", box=None, pad_edge=False)
        for n in v["nodes"]:
            meta = ", ".join(f"{k}={val}" for k, val in sorted(n["metadata"].items()))
            nodes.add_row(escape(n["id"]), escape(n["address"]), escape(meta))
        stdout.print(nodes)
        for e in v["endpoints"]:
            kind = e["metadata"].get("kind", "unary")
            stdout.print(f"\n[bold]{escape(e['name'])}[/bold] ({escape(kind)})")
            summary = e["metadata"].get("description", "").strip().split("\n\n")[0]
            if summary:
                stdout.print(f"  {' '.join(summary.split())}", soft_wrap=True, markup=False)
            for part in ("request", "response"):
                schema = json.dumps(readable_schema(e[part])) if e[part] else "(any JSON)"
                stdout.print(f"  {part + ':':<10}{schema}", soft_wrap=True, markup=False)
        stdout.print()


@app.command()
def health(
    service: str = typer.Argument(..., help="service name"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Check every node of a service (grpc.health.v1); exit 1 unless all are SERVING."""

    async def main() -> list[dict[str, Any]]:
        async with Client(registry=state.registry) as client:
            return [
                {
                    "node": h.node,
                    "address": h.address,
                    "version": h.version,
                    "status": h.status,
                    "detail": h.detail,
                    "stats": h.stats,
                }
                for h in await check_health(client, service)
            ]

    checks = run(main)
    if as_json:
        print_json(checks)
    else:
        table = Table(
            "NODE",
            "ADDRESS",
            "VERSION",
            "STATUS",
            "UPTIME",
            "REQUESTS",
            "ERRORS",
            "IN FLIGHT",
            "MEMORY",
            "TASKS",
            box=None,
            pad_edge=False,
        )
        for h in checks:
            st = h["stats"]
            figures = (
                [
                    _duration(st.get("uptime_s", 0)),
                    str(st.get("requests", "")),
                    str(st.get("errors", "")),
                    str(st.get("inflight", "")),
                    _mib(st.get("memory_rss_bytes", 0)),
                    str(st.get("tasks", "")),
                ]
                if st
                else [""] * 6
            )
            table.add_row(
                *(escape(h[k]) for k in ("node", "address", "version", "status")), *figures
            )
        stdout.print(table)
    failing = [h for h in checks if h["status"] != "SERVING"]
    if failing:
        fail(f"{len(failing)} of {len(checks)} nodes of {service} are not serving")


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB" if size else ""
