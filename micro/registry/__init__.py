"""Service discovery: the Registry protocol, its records, and the memory registry."""

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

__all__ = [
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
