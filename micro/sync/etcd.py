"""Locks and leader election in etcd: leases, create-revision order, watches.

Each hold is one key, ``<prefix><lock|leader>/<name>/<lease id>``, holding the
holder's id and bound to the hold's own lease. The lease makes the key
unique, so taking a place in line is one put; the key's create revision
orders it and is its fencing token (etcd's revision only grows). The key with
the lowest create revision holds. A waiter reads the line, watches the key
just ahead of its own from the revision it read (so no deletion is missed)
and reads again when that key goes: the recipe of etcd's own concurrency
package, with no polling.

The keeper renews the lease every third of the TTL and watches the hold's own
key. The hold is lost when the key is deleted (lease revoked or expired,
resigned from elsewhere), when etcd no longer knows the lease, or at its local
expiry: the TTL after the last renewal that succeeded, measured from when that
renewal was *sent*, less a margin (see ``lease``). etcd keeps the lease at
least that long, so this node gives up, and its body is cancelled, before etcd
could expire the lease and let the next in line take over, even if the node
was paused and its keeper could not run at all.

etcd counts TTLs in whole seconds, so a TTL is rounded up (and etcd may raise
it to its minimum, about 1.5 election timeouts).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass

import anyio

from ..errors import MicroError, NotFound, Unavailable
from ..etcd import (
    DEFAULT_ENDPOINT,
    Compare,
    Delete,
    EtcdClient,
    KeyValue,
    RevisionCompacted,
    shared_client,
)
from .base import LeaderInfo, SyncUnavailable
from .lease import RELEASE_TIMEOUT, RETRY_INTERVAL, Hold, HoldGone, LeasedSync

__all__ = ["EtcdSync"]

log = logging.getLogger("micro.sync")

#: where holds live unless told otherwise
DEFAULT_PREFIX = "/micro/sync/"


@dataclass(frozen=True, slots=True)
class _Lease:
    id: int
    key: bytes
    line: bytes  # the prefix every hold of this name shares
    ttl: int
    granted_at: float  # time.monotonic() when the grant was sent


class EtcdSync(LeasedSync):
    """Locks and leader election in etcd; ``async with EtcdSync("http://127.0.0.1:2379") as sync:``.

    ``client`` shares one EtcdClient with the registry, store and config. Its
    operations raise SyncUnavailable when etcd cannot be reached.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        prefix: str = DEFAULT_PREFIX,
        client: EtcdClient | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.client = client if client is not None else shared_client(endpoint)
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"

    async def _open(self) -> None:
        await self.client.__aenter__()

    async def _close(self) -> None:
        await self.client.__aexit__(None, None, None)

    def _line(self, kind: str, name: str) -> bytes:
        escaped = name.replace("%", "%25").replace("/", "%2F")
        return f"{self.prefix}{kind}/{escaped}/".encode()

    # -- holds --

    async def _grant(self, hold: Hold) -> None:
        ttl = max(1, math.ceil(hold.ttl))
        line = self._line(hold.kind, hold.name)
        with self._errors():
            sent = time.monotonic()
            lease = await self.client.lease_grant(ttl)
            key = line + f"{lease.id:016x}".encode()
            try:
                put = await self.client.put(key, hold.value.encode(), lease=lease.id)
            except BaseException:
                with anyio.move_on_after(RELEASE_TIMEOUT, shield=True):
                    with contextlib.suppress(Exception):
                        await self.client.lease_revoke(lease.id)
                raise
        hold.ttl = float(max(ttl, lease.ttl))  # what a dead holder keeps it for
        hold.lease = _Lease(lease.id, key, line, ttl, sent)
        hold.token = put.revision

    async def _ahead(self, hold: Hold) -> tuple[bytes, int] | None:
        lease: _Lease = hold.lease
        with self._errors():
            result = await self.client.range(lease.line, prefix=True)
        if not any(kv.key == lease.key for kv in result.kvs):
            raise HoldGone("its key was deleted while it waited (its lease expired or was revoked)")
        ahead = [kv for kv in result.kvs if kv.create_revision < hold.token]
        if not ahead:
            return None
        return max(ahead, key=lambda kv: kv.create_revision).key, result.revision

    async def _wait_gone(self, hold: Hold, ahead: tuple[bytes, int]) -> None:
        key, revision = ahead
        try:
            async with self.client.watch(key, start_revision=revision + 1) as events:
                async for event in events:
                    if event.type == "DELETE":
                        return
        except RevisionCompacted:
            return  # read the line again
        except MicroError as exc:
            # The next read of the line tells whether etcd is reachable at all.
            log.info("the watch of the hold ahead of %s broke: %s", hold.describe(), exc)
        await anyio.sleep(RETRY_INTERVAL)

    async def _keep(self, hold: Hold) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_own_key, hold, tg.cancel_scope)
            await self._renew(hold)
            tg.cancel_scope.cancel()

    async def _renew(self, hold: Hold) -> None:
        lease: _Lease = hold.lease
        last = lease.granted_at
        while True:
            await anyio.sleep(max(0.0, last + lease.ttl / 3 - time.monotonic()))
            if hold.expired():  # paused past the local expiry: too late to renew
                return
            renewed = False
            # Give up at the local expiry, a little before etcd could expire the
            # lease, so the body is cancelled before anyone else can be granted the name.
            with anyio.move_on_after(max(0.0, hold.expires - time.monotonic())):
                while not renewed:
                    sent = time.monotonic()
                    try:
                        left = await self.client.lease_keepalive_once(lease.id)
                    except NotFound:
                        left = 0
                    except MicroError as exc:
                        # Unreachable, or shutting down: retry until the deadline.
                        log.info("renewing %s: %s; retrying", hold.describe(), exc)
                        hold.renewal_failed = (
                            f"etcd at {self.client.endpoint} could not be reached to renew it"
                        )
                        await anyio.sleep(min(RETRY_INTERVAL, lease.ttl / 10))
                        continue
                    if left <= 0:
                        hold.fire("lost", "its lease expired (etcd no longer knows it)")
                        return
                    last, renewed = sent, True
                    hold.renewal_failed = ""
                    hold.renewed(sent)
            if not renewed:
                hold.fire(
                    "lost",
                    f"etcd at {self.client.endpoint} could not be reached to renew its lease "
                    f"within its TTL ({lease.ttl}s)",
                )
                return

    async def _watch_own_key(self, hold: Hold, keeper: anyio.CancelScope) -> None:
        lease: _Lease = hold.lease
        revision = hold.token
        while True:
            try:
                async with self.client.watch(lease.key, start_revision=revision + 1) as events:
                    async for event in events:
                        revision = event.kv.mod_revision
                        if event.type == "DELETE":
                            hold.fire(
                                "lost",
                                "its key was deleted (its lease was revoked or expired, "
                                "or it was resigned from elsewhere)",
                            )
                            keeper.cancel()
                            return
            except RevisionCompacted:
                with contextlib.suppress(MicroError):
                    result = await self.client.range(lease.key)
                    if not result.kvs or result.kvs[0].create_revision != hold.token:
                        hold.fire("lost", "its key was deleted")
                        keeper.cancel()
                        return
                    revision = result.revision
            except MicroError as exc:
                # Unreachable, or the stream broke: watch again; the renewal
                # deadline bounds how long this may last.
                log.info("the watch of %s broke: %s", hold.describe(), exc)
            await anyio.sleep(RETRY_INTERVAL)

    async def _revoke(self, hold: Hold) -> None:
        lease: _Lease = hold.lease
        with self._errors(), contextlib.suppress(NotFound):  # already expired
            await self.client.lease_revoke(lease.id)

    # -- observers --

    async def current_leader(self, name: str) -> LeaderInfo | None:
        with self._errors():
            result = await self.client.range(self._line("leader", name), prefix=True)
        return _leader(name, {kv.key: kv for kv in result.kvs})

    @contextlib.asynccontextmanager
    async def watch_leader(self, name: str) -> AsyncIterator[AsyncIterator[LeaderInfo | None]]:
        changes = self._leader_changes(name)
        try:
            yield changes
        finally:
            await changes.aclose()

    async def _leader_changes(self, name: str) -> AsyncGenerator[LeaderInfo | None, None]:
        line = self._line("leader", name)
        last: LeaderInfo | str | None = "unset"
        while True:
            # Read the line (this raises SyncUnavailable when etcd is unreachable),
            # then follow its changes from the revision read.
            with self._errors():
                result = await self.client.range(line, prefix=True)
            keys = {kv.key: kv for kv in result.kvs}
            info = _leader(name, keys)
            if info != last:
                last = info
                yield info
            try:
                watch = self.client.watch(line, prefix=True, start_revision=result.revision + 1)
                async with watch as events:
                    async for event in events:
                        if event.type == "PUT":
                            keys[event.kv.key] = event.kv
                        else:
                            keys.pop(event.kv.key, None)
                        info = _leader(name, keys)
                        if info != last:
                            last = info
                            yield info
            except RevisionCompacted:
                continue
            except MicroError as exc:
                log.info("the watch of the leader of %r broke: %s", name, exc)
            await anyio.sleep(RETRY_INTERVAL)

    async def resign(self, name: str) -> LeaderInfo | None:
        with self._errors():
            result = await self.client.range(self._line("leader", name), prefix=True)
            keys = {kv.key: kv for kv in result.kvs}
            info = _leader(name, keys)
            if info is None:
                return None
            kv = min(keys.values(), key=lambda kv: kv.create_revision)
            # Delete that key only if it is still the same hold (not a successor).
            done = await self.client.txn(
                [Compare(kv.key, "CREATE", "EQUAL", kv.create_revision)], [Delete(kv.key)]
            )
        return info if done.succeeded else None

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Report etcd's unavailability as the sync's."""
        try:
            yield
        except Unavailable as exc:
            if isinstance(exc, SyncUnavailable):
                raise
            detail = exc.detail
            if self.client.endpoint not in detail:
                detail = f"etcd at {self.client.endpoint}: {detail}"
            raise SyncUnavailable(detail, id="sync") from exc


def _leader(name: str, keys: dict[bytes, KeyValue]) -> LeaderInfo | None:
    if not keys:
        return None
    first = min(keys.values(), key=lambda kv: kv.create_revision)
    holder = first.value.decode("utf-8", "replace")
    return LeaderInfo(name=name, id=holder, token=first.create_revision)
