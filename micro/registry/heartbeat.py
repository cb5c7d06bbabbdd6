"""A service's registration: registered once it listens, kept alive by a heartbeat.

:class:`Registration` registers a record with a TTL, re-registers it every
``interval`` seconds in :meth:`~Registration.heartbeat` (a supervised part of
the service, so a registry that keeps failing is retried with backoff) and
deregisters it on shutdown, before the listener stops accepting, so no client
is sent to a node that is going away. The heartbeat's last failure is kept in
:attr:`~Registration.error` until one succeeds: the service's readiness
check reads it, as the heartbeat talks to the registry anyway.
"""

from __future__ import annotations

import logging

import anyio

from .base import Registry, ServiceRecord

__all__ = ["Registration"]

log = logging.getLogger("micro.registry")

#: how long deregistering on shutdown may take before the service stops anyway
DEREGISTER_TIMEOUT = 5.0


class Registration:
    """One record kept in ``registry``: registered, refreshed, and deregistered."""

    def __init__(self, registry: Registry, *, ttl: float, interval: float) -> None:
        self.registry = registry
        self.ttl = ttl
        self.interval = interval
        #: the record registered, None before it is and after it is deregistered
        self.record: ServiceRecord | None = None
        #: why the last heartbeat failed, until one succeeds ("" when it did)
        self.error = ""

    async def register(self, record: ServiceRecord) -> None:
        """Register ``record``; raises what the registry raises, and then it is not recorded
        (a node that never registered is not deregistered)."""
        await self.registry.register(record, ttl=self.ttl)
        self.record = record
        self.error = ""

    async def heartbeat(self) -> None:
        """Re-register every ``interval`` seconds until deregistered; raises a failure
        (after recording it in :attr:`error`) for the supervisor to restart it."""
        while True:
            await anyio.sleep(self.interval)
            # A restart of this part can come after shutdown has deregistered the record.
            record = self.record
            if record is None:
                return
            try:
                await self.registry.register(record, ttl=self.ttl)
            except Exception as exc:
                self.error = f"re-registering failed: {type(exc).__name__}: {exc}"
                raise
            self.error = ""

    async def check(self) -> None:
        """A readiness check: raises ConnectionError while the last heartbeat failed."""
        if self.error:
            raise ConnectionError(self.error)

    async def deregister(self) -> None:
        """Remove the record, if registered; a failure is logged, and it takes at most
        :data:`DEREGISTER_TIMEOUT` seconds."""
        record, self.record = self.record, None
        if record is None:
            return
        with anyio.move_on_after(DEREGISTER_TIMEOUT):
            try:
                await self.registry.deregister(record)
            except Exception:
                log.warning("deregistering %s failed", record.name, exc_info=True)
