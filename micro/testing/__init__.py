"""Helpers for users' tests: conformance suites that every backend runs.

``await check_registry(factory)`` checks a Registry implementation,
``await check_store(factory)`` a Store, ``await check_sync(factory)`` a
Sync and ``await check_events(factory)`` an EventStream, against the
behaviour micro relies on.
"""

from .events import EVENTS_CHECKS, EventsFactory, check_events
from .registry import REGISTRY_CHECKS, RegistryFactory, check_registry
from .store import STORE_CHECKS, StoreFactory, check_store
from .sync import SYNC_CHECKS, SyncCheck, SyncFactory, check_sync

__all__ = [
    "EVENTS_CHECKS",
    "EventsFactory",
    "REGISTRY_CHECKS",
    "RegistryFactory",
    "STORE_CHECKS",
    "StoreFactory",
    "SYNC_CHECKS",
    "SyncCheck",
    "SyncFactory",
    "check_events",
    "check_registry",
    "check_store",
    "check_sync",
]
