"""Service discovery: the Registry protocol, its records, and its backends.

Backends are chosen by URL, in code or with ``MICRO_REGISTRY``:

- ``mdns`` (the default): multicast DNS on the local network, no server needed;
- ``etcd://host:port``: an etcd cluster, for discovery across hosts and networks;
- ``memory``: in-process only, for tests and single-process applications;
- any scheme an installed plugin provides (:mod:`micro.plugins`).

Each URL gives one shared registry object per process, so every service and
client in the process sees the same view (and mDNS runs one responder).
"""

from __future__ import annotations

import os

from .. import plugins
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
DEFAULT_REGISTRY = plugins.KINDS["registry"].default


def from_url(url: str) -> Registry:
    """A new registry for ``url`` (``mdns``, ``etcd://host:port``, ``memory``, or a
    plugin's scheme)."""
    registry: Registry = plugins.create("registry", url)
    return registry


def resolve_registry(value: Registry | str | None) -> Registry:
    """The registry for a Service or Client option: an object, a URL, or ``MICRO_REGISTRY``
    / the default; anything else raises TypeError."""
    if value is None or isinstance(value, str):
        url = value or os.environ.get("MICRO_REGISTRY") or DEFAULT_REGISTRY
        if url == "memory":
            return default_registry()
    registry: Registry = plugins.resolve("registry", value)
    return registry


def _memory(url: str) -> Registry:
    return MemoryRegistry()


def _mdns(url: str) -> Registry:
    from .mdns import MdnsRegistry

    return MdnsRegistry()


def _etcd(url: str) -> Registry:
    from .etcd import EtcdRegistry

    return EtcdRegistry(plugins.endpoint(url, port=2379))


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
