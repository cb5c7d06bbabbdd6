"""The Selector protocol and the simple strategies."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Protocol

from ..registry.base import Node

__all__ = ["Selector", "RandomSelector", "RoundRobinSelector"]


class Selector(Protocol):
    def select(self, service: str, nodes: Sequence[Node]) -> Node:
        """Pick one of ``nodes`` (never empty) for a call to ``service``."""
        ...


class RandomSelector:
    """Uniformly random: no shared state, spreads load well with many clients."""

    def select(self, service: str, nodes: Sequence[Node]) -> Node:
        return nodes[0] if len(nodes) == 1 else random.choice(nodes)


class RoundRobinSelector:
    """Each node in turn, per service."""

    def __init__(self) -> None:
        self._counters: dict[str, itertools.count[int]] = {}

    def select(self, service: str, nodes: Sequence[Node]) -> Node:
        counter = self._counters.setdefault(service, itertools.count())
        return nodes[next(counter) % len(nodes)]
