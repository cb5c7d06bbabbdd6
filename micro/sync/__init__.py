"""Distributed locks and leader election: the Sync protocol and its backends.

Backends are chosen by URL, in code or with ``MICRO_SYNC``:

- ``memory`` (the default): in-process, for tests and single-process
  applications; every MemorySync in the process shares one set of locks;
- ``etcd://host:port``: an etcd cluster, for locks and elections across hosts;
- any scheme an installed plugin provides (:mod:`micro.plugins`).

Unlike a registry, a Sync is not shared between services: each one runs its
lease keepers in its own service's task group, so :func:`resolve_sync` makes
a new object for every service (memory ones still share the process's locks).
"""

from __future__ import annotations

from .. import plugins
from .base import (
    DEFAULT_TTL,
    LeaderInfo,
    Leadership,
    LeadershipLost,
    Lock,
    LockBusy,
    LockLost,
    NotHeld,
    Sync,
    SyncUnavailable,
)
from .memory import MemorySync, MemorySyncState, default_state

#: the sync used when none is given and ``MICRO_SYNC`` is unset
DEFAULT_SYNC = plugins.KINDS["sync"].default


def from_url(url: str, *, id: str | None = None) -> Sync:
    """A new Sync for ``url`` (``memory``, ``etcd://host:port``, or a plugin's scheme);
    ``id`` names this node."""
    sync: Sync = plugins.create("sync", url, id=id)
    return sync


def resolve_sync(value: Sync | str | None, *, id: str | None = None) -> Sync:
    """The Sync for a Service option: an object as is, else a new one for the URL or
    ``MICRO_SYNC`` / the default; anything else raises TypeError."""
    sync: Sync = plugins.resolve("sync", value, id=id)
    return sync


def _memory(url: str, *, id: str | None = None) -> Sync:
    return MemorySync(id=id)


def _etcd(url: str, *, id: str | None = None) -> Sync:
    from .etcd import EtcdSync

    return EtcdSync(plugins.endpoint(url, port=2379), id=id)


__all__ = [
    "DEFAULT_SYNC",
    "DEFAULT_TTL",
    "from_url",
    "resolve_sync",
    "LeaderInfo",
    "Leadership",
    "LeadershipLost",
    "Lock",
    "LockBusy",
    "NotHeld",
    "LockLost",
    "MemorySync",
    "MemorySyncState",
    "Sync",
    "SyncUnavailable",
    "default_state",
]
