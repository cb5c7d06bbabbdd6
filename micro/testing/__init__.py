"""Helpers for users' tests: conformance suites that every backend runs.

``await check_registry(factory)`` checks a Registry implementation against
the behaviour micro relies on.
"""

from .registry import REGISTRY_CHECKS, RegistryFactory, check_registry

__all__ = ["REGISTRY_CHECKS", "RegistryFactory", "check_registry"]
