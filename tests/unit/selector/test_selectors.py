"""Selection strategies and outlier ejection, without sockets."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from micro.registry import Node
from micro.selector import (
    ConsistentHashSelector,
    LeastInflightSelector,
    NodeHealth,
    RandomSelector,
    RoundRobinSelector,
    from_name,
)

NODES = [Node(id=f"n{i}", address=f"10.0.0.{i}:80") for i in range(5)]


def test_random_spreads_over_all_nodes() -> None:
    counts = Counter(RandomSelector().select("s", NODES).id for _ in range(5000))
    assert set(counts) == {n.id for n in NODES}
    assert min(counts.values()) > 700  # ~1000 each


def test_round_robin_visits_each_node_in_turn_whatever_the_order_given() -> None:
    rr = RoundRobinSelector()
    picks = [rr.select("s", NODES[::-1] if i % 2 else NODES).id for i in range(10)]
    assert picks == [f"n{i % 5}" for i in range(10)]


def test_round_robin_counts_per_service() -> None:
    rr = RoundRobinSelector()
    assert rr.select("a", NODES).id == "n0"
    assert rr.select("b", NODES).id == "n0"
    assert rr.select("a", NODES).id == "n1"


def test_consistent_hash_is_stable_and_moves_few_keys() -> None:
    sel = ConsistentHashSelector("x-user")
    keys = [f"user-{i}" for i in range(2000)]
    before = {k: sel.select("s", NODES, k).id for k in keys}
    assert before == {k: sel.select("s", NODES[::-1], k).id for k in keys}  # order-independent
    fewer = [n for n in NODES if n.id != "n2"]
    after = {k: sel.select("s", fewer, k).id for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    # Only the keys the removed node owned move.
    assert all(before[k] == "n2" for k in moved)
    assert 250 < len(moved) < 550  # about a fifth
    assert sel.metadata_key == "x-user"


def test_consistent_hash_without_key_is_random() -> None:
    sel = ConsistentHashSelector()
    assert len({sel.select("s", NODES).id for _ in range(200)}) > 1


def test_least_inflight_prefers_idle_nodes() -> None:
    sel = LeastInflightSelector()
    busy = NODES[0]
    for _ in range(10):
        sel.started(busy)
    picks = Counter(sel.select("s", NODES[:2]).id for _ in range(200))
    assert picks == Counter({"n1": 200})
    for _ in range(10):
        sel.finished(busy)
    assert sel.inflight(busy) == 0
    assert len({sel.select("s", NODES[:2]).id for _ in range(200)}) == 2


def test_from_name() -> None:
    assert isinstance(from_name("random"), RandomSelector)
    assert isinstance(from_name("roundrobin"), RoundRobinSelector)
    assert isinstance(from_name("leastinflight"), LeastInflightSelector)
    hashed = from_name("hash:X-Tenant")
    assert isinstance(hashed, ConsistentHashSelector) and hashed.metadata_key == "x-tenant"
    with pytest.raises(ValueError, match="unknown selector"):
        from_name("fastest")


def test_ejection_backs_off_and_recovers() -> None:
    health = NodeHealth(base_ejection=60, max_ejection=200)
    a, b = NODES[0], NODES[1]
    assert health.failed(a) == 60
    assert health.failed(a) == 120
    assert health.failed(a) == 200  # capped
    assert health.ejected(a) and not health.ejected(b)
    assert health.available([a, b]) == [b]
    health.succeeded(a)
    assert not health.ejected(a)


def test_all_ejected_falls_back_to_all() -> None:
    health = NodeHealth(base_ejection=60)
    for n in NODES[:2]:
        health.failed(n)
    assert health.available(NODES[:2]) == NODES[:2]


def test_ejection_expires() -> None:
    health = NodeHealth(base_ejection=0.01)
    health.failed(NODES[0])
    deadline = time.monotonic() + 5
    while health.ejected(NODES[0]):
        assert time.monotonic() < deadline
        time.sleep(0.005)
