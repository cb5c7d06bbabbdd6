"""Checks every Selector passes, micro's and users' alike: ``check_selector(factory)``.

A selector (plugged in by entry point, group ``micro.selector``, or passed
as ``Client(selector=...)``) picks one node of those it is given, for every
list of nodes the client may pass (one node, many, a list that changes
between calls as nodes come and go), with or without a key, and keeps
``started``/``finished`` balanced without failing.
"""

from __future__ import annotations

from collections.abc import Callable

from ..registry.base import Node
from ..selector.base import Selector

__all__ = ["SelectorFactory", "check_selector"]

SelectorFactory = Callable[[], Selector]


def _nodes(count: int, start: int = 0) -> list[Node]:
    return [
        Node(id=f"node-{i}", address=f"127.0.0.1:{20000 + i}", metadata={"zone": f"z{i % 2}"})
        for i in range(start, start + count)
    ]


def check_selector(factory: SelectorFactory, *, calls: int = 200) -> None:
    """Check selectors made by ``factory``; raises AssertionError naming what went wrong."""
    selector = factory()
    one = _nodes(1)
    for key in (None, "user-1"):
        picked = selector.select("svc", one, key)
        assert picked == one[0], f"with one node, select gave {picked!r}"
    many = _nodes(5)
    for i in range(calls):
        key = None if i % 2 else f"key-{i % 7}"
        node = selector.select("svc", many, key)
        assert node in many, f"select gave {node!r}, not one of the nodes given"
        selector.started(node)
        selector.finished(node)
    # Nodes come and go between calls: only the current ones may be picked.
    for size, start in ((3, 0), (4, 2), (1, 5), (5, 0)):
        current = _nodes(size, start)
        for i in range(20):
            node = selector.select("svc", current, f"key-{i}")
            assert node in current, f"select gave {node!r}, not one of {current!r}"
    # Calls in flight on several nodes at once, finished in another order.
    inflight = [selector.select("svc", many) for _ in range(10)]
    for node in inflight:
        selector.started(node)
    for node in reversed(inflight):
        selector.finished(node)
    # Several services through one selector.
    for service in ("a", "b", "c"):
        assert selector.select(service, many) in many
