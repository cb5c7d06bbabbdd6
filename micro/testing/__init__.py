"""Helpers for users' tests: conformance suites that every backend runs.

``await check_registry(factory)`` checks a Registry implementation, and
``await check_store(factory)`` a Store, against the behaviour micro relies on.
"""

from .registry import REGISTRY_CHECKS, RegistryFactory, check_registry
from .store import STORE_CHECKS, StoreFactory, check_store

__all__ = [
    "REGISTRY_CHECKS",
    "RegistryFactory",
    "STORE_CHECKS",
    "StoreFactory",
    "check_registry",
    "check_store",
]
