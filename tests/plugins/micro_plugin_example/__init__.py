"""A third-party micro plugin, as a package outside micro would write it.

Its ``pyproject.toml`` declares the entry points that make ``example://``
URLs name its backends; the tests install it by writing that package's
``*.dist-info`` (with ``entry_points.txt``) onto ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Sequence

from micro.registry import MemoryRegistry, Node
from micro.store import MemoryStore

__all__ = ["ExampleRegistry", "ExampleStore", "FirstSelector", "registry", "selector", "store"]


class ExampleRegistry(MemoryRegistry):
    """An in-process registry that remembers the URL it was made for."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


class ExampleStore(MemoryStore):
    """An in-process store that remembers the URL it was made for."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


class FirstSelector:
    """Always the first node in address order."""

    def select(self, service: str, nodes: Sequence[Node], key: str | None = None) -> Node:
        return min(nodes, key=lambda n: n.address)

    def started(self, node: Node) -> None:
        pass

    def finished(self, node: Node) -> None:
        pass


def registry(url: str) -> ExampleRegistry:
    return ExampleRegistry(url)


def store(url: str) -> ExampleStore:
    return ExampleStore(url)


def selector(url: str) -> FirstSelector:
    return FirstSelector()
