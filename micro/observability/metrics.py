"""Prometheus metrics for calls, deliveries and the registry cache.

The instruments are created once per process in prometheus_client's default
registry, so a program's own metrics appear on the same ``/metrics`` page, and
carry a ``service`` label so several services in one process stay apart.
Each endpoint's label children are looked up once and kept, so counting a
call costs a few increments, not a label lookup each.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import GrpcStatus

if TYPE_CHECKING:
    from ..registry.cache import RegistryCache

__all__ = ["CallInstruments", "Instruments", "instruments", "exposition", "CONTENT_TYPE"]

#: The Prometheus text format, version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: gRPC status code -> its name, the value of the ``code`` label.
CODE_NAMES: dict[int, str] = {
    value: name for name, value in vars(GrpcStatus).items() if name.isupper()
}

# Latencies of RPCs on one host to calls across regions: 0.5 ms to 10 s.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class CallInstruments:
    """The label children of one (side, service, endpoint)."""

    __slots__ = ("_counters", "_labels", "_requests", "inflight", "latency")

    def __init__(self, requests: Any, inflight: Any, latency: Any, labels: tuple[str, ...]):
        self._requests = requests
        self._labels = labels
        self._counters: dict[int, Any] = {}
        self.inflight = inflight.labels(*labels)
        self.latency = latency.labels(*labels)

    def count(self, code: int) -> None:
        counter = self._counters.get(code)
        if counter is None:
            name = CODE_NAMES.get(code, str(code))
            counter = self._counters[code] = self._requests.labels(*self._labels, name)
        counter.inc()


class Instruments:
    """Every metric micro exports (one instance per process)."""

    def __init__(self) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        call = ("service", "endpoint")
        self.server_requests = Counter(
            "micro_server_requests", "Calls handled, by endpoint and status code.", (*call, "code")
        )
        self.server_latency = Histogram(
            "micro_server_request_duration_seconds",
            "Time to handle a call, from its request to its last answer.",
            call,
            buckets=_BUCKETS,
        )
        self.server_inflight = Gauge(
            "micro_server_requests_in_flight", "Calls being handled.", call
        )
        self.client_requests = Counter(
            "micro_client_requests",
            "Calls made, by called service, endpoint and status code.",
            (*call, "code"),
        )
        self.client_latency = Histogram(
            "micro_client_request_duration_seconds",
            "Time a call took as the caller saw it, retries included.",
            call,
            buckets=_BUCKETS,
        )
        self.client_inflight = Gauge(
            "micro_client_requests_in_flight", "Calls waiting for their answer.", call
        )
        self.published = Counter(
            "micro_broker_published", "Messages published, by topic.", ("service", "topic")
        )
        self.publish_errors = Counter(
            "micro_broker_publish_errors", "Publishes that failed, by topic.", ("service", "topic")
        )
        self.delivered = Counter(
            "micro_broker_delivered",
            "Messages handed to subscribers, by topic, queue group and outcome (ok, error).",
            ("service", "topic", "queue", "outcome"),
        )
        self._caches: weakref.WeakSet[RegistryCache] = weakref.WeakSet()
        REGISTRY.register(_CacheCollector(self._caches))
        self._calls: dict[tuple[str, str, str], CallInstruments] = {}

    def server(self, service: str, endpoint: str) -> CallInstruments:
        return self._call("server", service, endpoint)

    def client(self, service: str, endpoint: str) -> CallInstruments:
        return self._call("client", service, endpoint)

    def _call(self, side: str, service: str, endpoint: str) -> CallInstruments:
        key = (side, service, endpoint)
        found = self._calls.get(key)
        if found is None:
            if side == "server":
                parts = (self.server_requests, self.server_inflight, self.server_latency)
            else:
                parts = (self.client_requests, self.client_inflight, self.client_latency)
            found = self._calls[key] = CallInstruments(*parts, (service, endpoint))
        return found

    def watch_cache(self, cache: RegistryCache) -> None:
        """Report ``cache``'s size for as long as it lives."""
        self._caches.add(cache)


class _CacheCollector:
    """Reads the registry caches' sizes when scraped (nothing to count on the hot path)."""

    def __init__(self, caches: weakref.WeakSet[RegistryCache]) -> None:
        self._caches = caches

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        services = GaugeMetricFamily(
            "micro_registry_cache_services", "Services held in the clients' registry caches."
        )
        nodes = GaugeMetricFamily(
            "micro_registry_cache_nodes", "Nodes held in the clients' registry caches."
        )
        total_services = total_nodes = 0
        for cache in list(self._caches):
            s, n = cache.size()
            total_services += s
            total_nodes += n
        services.add_metric([], total_services)
        nodes.add_metric([], total_nodes)
        yield services
        yield nodes


_instruments: Instruments | None = None
_instruments_lock = threading.Lock()


def instruments() -> Instruments:
    """The process's instruments, created on first use (by any thread)."""
    global _instruments
    if _instruments is None:
        with _instruments_lock:
            if _instruments is None:
                _instruments = Instruments()
    return _instruments


def exposition() -> bytes:
    """Every metric of the default registry in the Prometheus text format."""
    from prometheus_client import REGISTRY, generate_latest

    return generate_latest(REGISTRY)
