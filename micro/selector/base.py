"""Node selection: which node of a service takes the next call.

A selector picks one node from the candidates the client hands it (already
filtered by version and metadata, with ejected nodes removed). The client
tells it how calls end, so strategies that care (least in-flight) can count.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Sequence
from typing import Protocol

from ..registry.base import Node

__all__ = [
    "Selector",
    "RandomSelector",
    "RoundRobinSelector",
    "ConsistentHashSelector",
    "LeastInflightSelector",
    "from_name",
]


class Selector(Protocol):
    def select(self, service: str, nodes: Sequence[Node], key: str | None = None) -> Node:
        """Pick one of ``nodes`` (never empty) for a call to ``service``.

        ``key`` is the call's affinity key, used by hashing strategies.
        """
        ...

    def started(self, node: Node) -> None:
        """A call to ``node`` began."""
        ...

    def finished(self, node: Node) -> None:
        """A call to ``node`` ended (in any way)."""
        ...


class _Stateless:
    def started(self, node: Node) -> None:
        pass

    def finished(self, node: Node) -> None:
        pass


class RandomSelector(_Stateless):
    """Uniformly random (the default): no shared state, spreads load well with many clients."""

    def select(self, service: str, nodes: Sequence[Node], key: str | None = None) -> Node:
        return nodes[0] if len(nodes) == 1 else random.choice(nodes)


class RoundRobinSelector(_Stateless):
    """Each node in turn, per service."""

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count[int]] = {}

    def select(self, service: str, nodes: Sequence[Node], key: str | None = None) -> Node:
        counter = self._counters.setdefault(service, itertools.count())
        ordered = sorted(nodes, key=lambda n: n.id)
        return ordered[next(counter) % len(ordered)]


class ConsistentHashSelector(_Stateless):
    """The same key goes to the same node while that node lives (rendezvous hashing).

    When a node leaves, only the keys it owned move; when one joins, it takes
    about 1/n of the keys. The key comes from a metadata value of the call
    (``Client(selector=ConsistentHashSelector("x-user-id"))``) or the call's
    ``key=``; calls without a key are spread at random.
    """

    def __init__(self, metadata_key: str | None = None) -> None:
        self.metadata_key = metadata_key.lower() if metadata_key else None

    def select(self, service: str, nodes: Sequence[Node], key: str | None = None) -> Node:
        if key is None:
            return random.choice(nodes)
        return max(nodes, key=lambda n: _weight(key, n.id))


def _weight(key: str, node_id: str) -> int:
    digest = hashlib.blake2b(f"{key}\x00{node_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class LeastInflightSelector:
    """Power of two choices: of two random nodes, the one with fewer calls in flight.

    Nearly as good as always picking the least loaded node, without herding
    every caller onto the same one.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, int] = {}

    def select(self, service: str, nodes: Sequence[Node], key: str | None = None) -> Node:
        if len(nodes) == 1:
            return nodes[0]
        a, b = random.sample(list(nodes), 2)
        return a if self.inflight(a) <= self.inflight(b) else b

    def inflight(self, node: Node) -> int:
        return self._inflight.get(node.id, 0)

    def started(self, node: Node) -> None:
        self._inflight[node.id] = self._inflight.get(node.id, 0) + 1

    def finished(self, node: Node) -> None:
        left = self._inflight.get(node.id, 0) - 1
        if left > 0:
            self._inflight[node.id] = left
        else:
            self._inflight.pop(node.id, None)


def from_name(name: str) -> Selector:
    """``random``, ``roundrobin``, ``leastinflight`` or ``hash:<metadata key>``."""
    if name == "random":
        return RandomSelector()
    if name in ("roundrobin", "round_robin"):
        return RoundRobinSelector()
    if name in ("leastinflight", "least_inflight", "p2c"):
        return LeastInflightSelector()
    if name.startswith("hash"):
        _, _, key = name.partition(":")
        return ConsistentHashSelector(key or None)
    raise ValueError(f"unknown selector {name!r}: random, roundrobin, leastinflight, hash:<key>")
