"""Outlier ejection: nodes that fail calls sit out for a while.

A node whose call fails at the transport (refused, reset, lost, or a 503 from a
draining server) is ejected for a backoff period that doubles with each
consecutive failure, up to a cap; a success clears its record. Ejection
happens at once, long before the registry notices a dead node is gone. If
every candidate is ejected, the client tries them anyway rather than failing
fast forever.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..registry.base import Node

__all__ = ["NodeHealth"]


@dataclass
class _Record:
    failures: int
    until: float


class NodeHealth:
    def __init__(self, *, base_ejection: float = 1.0, max_ejection: float = 30.0) -> None:
        self.base_ejection = base_ejection
        self.max_ejection = max_ejection
        self._records: dict[str, _Record] = {}

    def failed(self, node: Node) -> float:
        """Record a failure; returns how long the node is now ejected for."""
        rec = self._records.get(node.address)
        failures = rec.failures + 1 if rec else 1
        period = float(min(self.max_ejection, self.base_ejection * 2 ** (failures - 1)))
        self._records[node.address] = _Record(failures, time.monotonic() + period)
        return period

    def succeeded(self, node: Node) -> None:
        self._records.pop(node.address, None)

    def ejected(self, node: Node) -> bool:
        rec = self._records.get(node.address)
        return rec is not None and rec.until > time.monotonic()

    def available(self, nodes: Sequence[Node]) -> list[Node]:
        """The nodes not ejected, or all of them when every one is."""
        healthy = [n for n in nodes if not self.ejected(n)]
        return healthy or list(nodes)
