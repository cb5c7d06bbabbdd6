"""Service discovery: the Registry protocol, its records, and its backends.

Backends are chosen by URL, in code or with ``MICRO_REGISTRY``:

- ``mdns`` (the default): multicast DNS on the local network, no server needed;
- ``etcd://host:port``: an etcd cluster, for discovery across hosts and networks;
- ``memory``: in-process only, for tests and single-process applications.

Each URL gives one shared registry object per process, so every service and
client in the process sees the same view (and mDNS runs one responder).
"""

import os

from .base import (
    EndpointInfo,
    EventType,
    Node,
    Registry,
    RegistryUnavailable,
    ServiceNotFound,
    ServiceRecord,
    Watcher,
    WatchEvent,
)
from .memory import MemoryRegistry, default_registry

#: the registry used when none is given and ``MICRO_REGISTRY`` is unset
DEFAULT_REGISTRY = "mdns"

_shared: dict[str, Registry] = {}


def from_url(url: str) -> Registry:
    """A new registry for ``url`` (``mdns``, ``etcd://host:port``, ``memory``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = url, ""
    scheme = scheme.lower()
    if scheme == "memory":
        return MemoryRegistry()
    if scheme == "mdns":
        from .mdns import MdnsRegistry

        return MdnsRegistry()
    if scheme in ("etcd", "etcd+http", "etcd+https"):
        from .etcd import EtcdRegistry

        host = rest.strip("/") or "127.0.0.1:2379"
        return EtcdRegistry(f"{'https' if scheme == 'etcd+https' else 'http'}://{host}")
    raise ValueError(f"unknown registry {url!r}: use mdns, etcd://host:port or memory")


def resolve_registry(value: "Registry | str | None") -> Registry:
    """The registry for a Service or Client option: an object, a URL, or the default."""
    if value is not None and not isinstance(value, str):
        return value
    url = value or os.environ.get("MICRO_REGISTRY") or DEFAULT_REGISTRY
    if url == "memory":
        return default_registry()
    registry = _shared.get(url)
    if registry is None:
        registry = _shared[url] = from_url(url)
    return registry


__all__ = [
    "DEFAULT_REGISTRY",
    "from_url",
    "resolve_registry",
    "EndpointInfo",
    "EventType",
    "MemoryRegistry",
    "Node",
    "Registry",
    "RegistryUnavailable",
    "ServiceNotFound",
    "ServiceRecord",
    "WatchEvent",
    "Watcher",
    "default_registry",
]
