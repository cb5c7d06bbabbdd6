"""A service node in its own process, for discovery and failover tests.

    python -m tests.integration.node_process NAME NODE_ID REGISTRY [--backend trio]

Serves ``Node.Whoami`` (idempotent: answers with the node id) and
``Node.Count`` (not idempotent), registers in REGISTRY, prints
``ready <address>`` once serving, and stops gracefully on SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import anyio

import micro


@dataclass
class Who:
    node: str
    calls: int


class Node:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.calls = 0

    @micro.endpoint(idempotent=True)
    async def whoami(self, req: dict[str, str]) -> Who:
        self.calls += 1
        return Who(self.node_id, self.calls)

    async def count(self, req: dict[str, str]) -> Who:
        self.calls += 1
        return Who(self.node_id, self.calls)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("node_id")
    parser.add_argument("registry")
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--ttl", type=float, default=5.0)
    args = parser.parse_args()
    service = micro.Service(
        args.name,
        address="127.0.0.1:0",
        registry=args.registry,
        register_ttl=args.ttl,
        register_interval=args.ttl / 3,
        grace_period=5,
    )
    service.handle(Node(args.node_id))

    @service.after_start
    async def announce() -> None:
        print(f"ready {service.address}", flush=True)

    @service.after_stop
    async def bye() -> None:
        print("stopped", flush=True)

    anyio.run(service.serve, backend=args.backend)
    sys.exit(0)


if __name__ == "__main__":
    main()
