"""Helpers for users' tests: conformance suites that every backend runs.

``await check_registry(factory)`` checks a Registry implementation,
``await check_store(factory)`` a Store, ``await check_sync(factory)`` a
Sync, ``await check_events(factory)`` an EventStream and
``await check_broker(factory)`` a Broker, against the behaviour micro relies
on; ``check_codec(codec)`` and ``check_selector(factory)`` check a codec and a
node selector.
"""

from .broker import BROKER_CHECKS, BrokerFactory, check_broker
from .codec import CODEC_SAMPLES, check_codec
from .events import EVENTS_CHECKS, EventsFactory, check_events
from .registry import REGISTRY_CHECKS, RegistryFactory, check_registry
from .selector import SelectorFactory, check_selector
from .store import STORE_CHECKS, StoreFactory, check_store
from .sync import SYNC_CHECKS, SyncCheck, SyncFactory, check_sync

__all__ = [
    "BROKER_CHECKS",
    "BrokerFactory",
    "CODEC_SAMPLES",
    "SelectorFactory",
    "check_broker",
    "check_codec",
    "check_selector",
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
