"""Live call metrics for the dashboard, read from the nodes' own ``/metrics`` pages.

Each time the dashboard asks for a service's metrics, the gateway reads the
Prometheus text of every node of that service (at most once a
:data:`MIN_INTERVAL`) and keeps the per-endpoint totals in a small ring buffer
per service, in the gateway process. Rates, error rates and latency quantiles
come from the differences between consecutive readings: requests per second,
failed requests per second, and p50/p99 interpolated in the latency
histogram's buckets as Prometheus's ``histogram_quantile`` does.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "EndpointTotals",
    "MetricsHistory",
    "NodeReading",
    "parse_node_metrics",
    "quantile",
]

#: seconds between two readings of a service's nodes; asking sooner reuses the last one
MIN_INTERVAL = 1.0
#: readings kept per service (two minutes at the dashboard's pace of one every 2 s)
HISTORY = 60
#: services whose readings are kept; the least recently asked is dropped first
MAX_SERVICES = 256

_REQUESTS = "micro_server_requests"
_LATENCY = "micro_server_request_duration_seconds"


@dataclass(slots=True)
class EndpointTotals:
    """One endpoint's counters on one node, as read: they only grow until a restart."""

    requests: float = 0.0
    errors: float = 0.0
    #: cumulative histogram buckets, ``(upper bound, count)`` by ascending bound
    buckets: list[tuple[float, float]] = field(default_factory=list)


#: endpoint -> its totals on one node
NodeReading = dict[str, EndpointTotals]


def parse_node_metrics(text: str, service: str) -> NodeReading:
    """The server-side call totals of ``service`` in a node's Prometheus text.

    Other services in the same process (and every other metric) are left out;
    text that is not Prometheus's format raises ValueError.
    """
    reading: NodeReading = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (_REQUESTS, _LATENCY):
            continue
        for sample in family.samples:
            labels = sample.labels
            if labels.get("service") != service or "endpoint" not in labels:
                continue
            totals = reading.setdefault(labels["endpoint"], EndpointTotals())
            if family.name == _REQUESTS and sample.name == _REQUESTS + "_total":
                totals.requests += sample.value
                if labels.get("code", "OK") != "OK":
                    totals.errors += sample.value
            elif sample.name == _LATENCY + "_bucket":
                totals.buckets.append((float(labels["le"]), sample.value))
    for totals in reading.values():
        totals.buckets.sort()
    return reading


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (0..1) of cumulative ``buckets``, interpolated linearly within
    the bucket it falls in; None when the buckets count nothing."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                # Beyond the last finite bucket: its bound is all that is known.
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def _delta(now: EndpointTotals, before: EndpointTotals | None) -> EndpointTotals:
    """What happened between two readings; a counter that went down was reset (the
    node restarted), so all it counts is new."""
    if before is None or now.requests < before.requests:
        return now
    old = dict(before.buckets)
    return EndpointTotals(
        now.requests - before.requests,
        now.errors - before.errors,
        [(bound, count - old.get(bound, 0.0)) for bound, count in now.buckets],
    )


@dataclass(slots=True)
class _Round:
    """One reading of every node of a service."""

    at: float
    nodes: dict[str, NodeReading]


class MetricsHistory:
    """The last :data:`HISTORY` readings of each service's nodes."""

    def __init__(self, history: int = HISTORY, max_services: int = MAX_SERVICES) -> None:
        self.history = history
        self.max_services = max_services
        self._rounds: OrderedDict[str, deque[_Round]] = OrderedDict()

    def due(self, service: str, now: float | None = None) -> bool:
        """Whether the nodes of ``service`` should be read again."""
        rounds = self._rounds.get(service)
        now = time.monotonic() if now is None else now
        return not rounds or now - rounds[-1].at >= MIN_INTERVAL

    def add(self, service: str, nodes: Mapping[str, NodeReading], at: float | None = None) -> None:
        """Keep one reading of the nodes of ``service`` (node id -> its reading)."""
        rounds = self._rounds.get(service)
        if rounds is None:
            rounds = self._rounds[service] = deque(maxlen=self.history)
            while len(self._rounds) > self.max_services:
                self._rounds.popitem(last=False)
        self._rounds.move_to_end(service)
        rounds.append(_Round(time.monotonic() if at is None else at, dict(nodes)))

    def series(self, service: str, node: str | None = None) -> dict[str, Any]:
        """Per endpoint, one point per interval between readings (oldest first):
        ``t`` seconds before the last reading, ``rate`` and ``error_rate`` per second,
        ``p50`` and ``p99`` latency in seconds (None without calls); with ``node``,
        that node's calls only. Also each endpoint's totals in the last reading."""
        rounds = list(self._rounds.get(service, ()))
        endpoints: dict[str, dict[str, Any]] = {}
        if not rounds:
            return {"interval": MIN_INTERVAL, "samples": 0, "endpoints": endpoints}
        last = rounds[-1]

        def entry(name: str) -> dict[str, Any]:
            return endpoints.setdefault(name, {"points": [], "requests": 0.0, "errors": 0.0})

        for before, now in itertools.pairwise(rounds):
            elapsed = now.at - before.at
            if elapsed <= 0:
                continue
            summed: dict[str, EndpointTotals] = {}
            for node_id, reading in now.nodes.items():
                if node is not None and node_id != node:
                    continue
                previous = before.nodes.get(node_id)
                if previous is None:
                    continue  # a node first read now: nothing to compare yet
                for name, totals in reading.items():
                    d = _delta(totals, previous.get(name))
                    into = summed.setdefault(name, EndpointTotals())
                    into.requests += d.requests
                    into.errors += d.errors
                    merged = dict(into.buckets)
                    for bound, count in d.buckets:
                        merged[bound] = merged.get(bound, 0.0) + count
                    into.buckets = sorted(merged.items())
            names = set(summed) | {n for r in now.nodes.values() for n in r}
            for name in names:
                d = summed.get(name, EndpointTotals())
                entry(name)["points"].append(
                    {
                        "t": round(now.at - last.at, 3),
                        "rate": d.requests / elapsed,
                        "error_rate": d.errors / elapsed,
                        "p50": quantile(0.5, d.buckets) if d.requests else None,
                        "p99": quantile(0.99, d.buckets) if d.requests else None,
                    }
                )
        for node_id, reading in last.nodes.items():
            if node is not None and node_id != node:
                continue
            for name, totals in reading.items():
                e = entry(name)
                e["requests"] += totals.requests
                e["errors"] += totals.errors
        return {
            "interval": MIN_INTERVAL,
            "samples": len(rounds),
            "endpoints": {name: endpoints[name] for name in sorted(endpoints)},
        }
