"""Service discovery over multicast DNS (DNS-SD, RFC 6762/6763), with no server.

Theory
------
Every registered node is one DNS-SD service instance of type
``_micro._tcp.local.``::

    PTR  _micro._tcp.local.          -> <instance>._micro._tcp.local.
    SRV  <instance>._micro._tcp...   -> port of the node, target with A/AAAA = its IP
    TXT  <instance>._micro._tcp...   -> the ServiceRecord of that one node

The instance label is a readable prefix of the node id plus a hash of
(service, version, node id): unique per node, at most 63 bytes, any Unicode in
the ids. The TXT record holds the record's JSON (the same shape the etcd
registry stores), zlib-compressed and cut into numbered strings, because one
TXT string holds at most 255 bytes: ``micro=1``, ``n=<count>``, ``0=<bytes>``,
``1=<bytes>``, ... (RFC 6763 allows binary values). The whole TXT record must
fit one mDNS packet (``MAX_TXT_BYTES``, 8 kB; about 120 endpoints with
typical schemas); larger records fail ``register`` with PayloadTooLarge rather
than being dropped on the wire.

One ``Zeroconf`` per registry, opened in a worker thread on the first
``async with`` and closed on the last; zeroconf runs its own asyncio loop in its
own thread, so it works the same under asyncio and Trio. One ``ServiceBrowser``
for ``_micro._tcp`` feeds an in-memory view, instance name -> node record. Its
callbacks run on the browser's thread: they resolve the instance from
zeroconf's cache, decode the TXT record, and hand ``(instance, record or
None)`` to our event loop with ``anyio.from_thread.run_sync`` and the token
captured on entry. The view and the watchers live on the event loop thread
only. Reads answer from the view; right after opening, a lookup that finds
nothing waits (up to ``INITIAL_WAIT``) for the answers to the browser's first
query. The browser asks multicast (QM) questions only: several mDNS stacks on
one host share port 5353, so a unicast answer reaches just one of them.

Registering announces the node with zeroconf's ``cooperating_responders``
(no probing: the instance name is ours by construction) and returns once the
first announcement is out; zeroconf repeats it twice within 0.45 s, and a later
change to the node cancels repeats still pending. Nodes registered through this
registry are authoritative locally: ``register`` and ``deregister`` update the
view (and notify watchers) at once, and the browser's later, possibly stale,
reports about them are ignored. Another host's node cannot be deregistered
from here (deregistering it is a no-op).

TTL
---
The registry TTL means "gone unless re-registered within ``ttl`` seconds".
It maps onto mDNS thus:

* The node's records (PTR, SRV, TXT, A/AAAA) carry a DNS TTL of ``ceil(ttl)``,
  at least ``MIN_RECORD_TTL`` (3 s). While the node is registered its owner
  re-announces them every third of that TTL (one packet; RFC 6762 asks for at
  least a second between repeats, hence the floor), so peers' copies never
  expire while the owner lives.
* The owner enforces the registry TTL itself: a node not re-registered within
  ``ttl`` is withdrawn with goodbye packets (peers see it gone within
  milliseconds) by a timer on zeroconf's loop. Re-registering an unchanged
  record only moves that deadline and sends nothing; a changed record is
  announced again at once.
* A node whose owner died without a goodbye is gone from peers within the
  record TTL of its last announcement. Peers judge a node by its SRV record:
  zeroconf stretches every received PTR record's TTL to at least 1125 s
  against refresh storms, so the PTR outlives a dead node. Reads skip a node
  whose SRV record has expired; a sweep every ``SWEEP_INTERVAL`` removes its
  PTR record too, which makes the browser report it gone (the DELETE event).

``ttl=None`` means no local expiry and records with the RFC 6762 host TTL
(``DEFAULT_RECORD_TTL``, 120 s).

Interfaces: ``MdnsRegistry(interfaces=[...])``, else ``MICRO_MDNS_INTERFACES``
(comma separated addresses or interface indexes), else zeroconf's default (all
interfaces). If multicast cannot be set up, opening raises RegistryUnavailable.

Size: the TXT codec is :mod:`micro.registry._mdns_txt`; the rest stays one
module because it is one object bridging two threads, the event loop's view
and watchers and zeroconf's browser and timers, whose hand-offs only make
sense read together.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import ipaddress
import logging
import math
import os
import re
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from anyio.streams.memory import MemoryObjectSendStream
from zeroconf import (
    DNSQuestionType,
    IPVersion,
    RecordUpdate,
    ServiceBrowser,
    ServiceInfo,
    ServiceNameAlreadyRegistered,
    ServiceStateChange,
    Zeroconf,
    current_time_millis,
)
from zeroconf import Error as ZeroconfError
from zeroconf._dns import DNSPointer, DNSRecord  # also importable from zeroconf itself

from ..errors import PayloadTooLarge
from ..refcount import Users
from ._mdns_txt import decode_txt, encode_txt
from .base import (
    EventType,
    Node,
    RegistryUnavailable,
    ServiceNotFound,
    ServiceRecord,
    WatchEvent,
)

__all__ = ["MdnsRegistry", "SERVICE_TYPE", "INTERFACES_ENV"]

log = logging.getLogger(__name__)

#: the DNS-SD service type of every micro node (before the domain)
SERVICE_TYPE = "_micro._tcp"
#: environment variable naming the interfaces when the constructor does not
INTERFACES_ENV = "MICRO_MDNS_INTERFACES"

#: DNS TTL of the records of a node registered with ``ttl=None`` (RFC 6762 host TTL)
DEFAULT_RECORD_TTL = 120
#: the shortest DNS TTL announced: records are re-announced every third of it,
#: and RFC 6762 asks for at least a second between repeats
MIN_RECORD_TTL = 3
#: seconds reads wait after the registry opens, for answers to the browser's first
#: query: it goes out after 20-120 ms, and a responder delays a multicast answer by
#: 20-120 ms, or to a second after it last multicast the record (RFC 6762 s. 6, 14)
INITIAL_WAIT = 2.0
#: seconds between sweeps of zeroconf's cache for expired records
SWEEP_INTERVAL = 0.5
#: a PTR record this recent (ms) may still be waiting for its SRV record
SRV_GRACE_MS = 2000
# DNS record types and class (RFC 1035, RFC 2782)
_TYPE_PTR, _TYPE_SRV, _CLASS_IN = 12, 33, 1
#: how long the browser thread waits to resolve an instance not fully cached
RESOLVE_TIMEOUT_MS = 1000
#: seconds to wait for zeroconf to open its sockets and start its thread
OPEN_TIMEOUT = 15.0
#: events a slow watcher may fall behind by before its watch is ended
WATCH_BUFFER = 1024

#: the TXT record (all strings with their length bytes) must fit one mDNS packet
MAX_TXT_BYTES = 8192
_LABEL_PREFIX = 40


@dataclass(eq=False)
class _Registration:
    """A node this registry announces. ``deadline`` is read by zeroconf's thread."""

    info: ServiceInfo
    record_ttl: int
    deadline: float | None  # time.monotonic() after which the node is withdrawn
    armed: bool = False  # an expiry timer is pending (zeroconf's thread only)


@dataclass(eq=False)
class _Open:
    """What exists while the registry is open."""

    zeroconf: Zeroconf
    browser: ServiceBrowser
    token: anyio.lowlevel.EventLoopToken
    generation: int
    changes: anyio.Lock  # serializes register and deregister
    ready_at: float  # time.monotonic() when reads stop waiting for first answers
    view: dict[str, ServiceRecord] = field(default_factory=dict)
    # ours, deregistered or expired, until the browser reports them gone (added
    # to by zeroconf's thread too)
    withdrawn: set[str] = field(default_factory=set)
    changed: anyio.Event = field(default_factory=anyio.Event)  # set on every view change


class MdnsRegistry:
    """A Registry over mDNS/DNS-SD: ``async with MdnsRegistry() as registry:``.

    ``interfaces`` are the addresses (or IPv6 interface indexes) to use;
    default: ``MICRO_MDNS_INTERFACES``, else every interface. ``domain`` is
    the mDNS domain (``local.``).
    """

    def __init__(
        self, *, interfaces: Sequence[str | int] | None = None, domain: str = "local."
    ) -> None:
        if interfaces is None:
            interfaces = _interfaces_from_env()
        self.interfaces: list[str | int] | None = None if interfaces is None else list(interfaces)
        self.domain = domain if domain.endswith(".") else domain + "."
        self.service_type = f"{SERVICE_TYPE}.{self.domain}"
        self._users = Users()
        self._open: _Open | None = None
        self._generation = 0
        # Serializes opening and closing; one lock per event loop, as one
        # registry object may serve several loops one after another.
        self._lifecycle = anyio.lowlevel.RunVar[anyio.Lock]("mdns_registry_lifecycle")
        # Nodes we announce, by instance name. Guarded by _lock: zeroconf's
        # thread withdraws expired ones.
        self._registered: dict[str, _Registration] = {}
        self._lock = threading.Lock()
        self._watchers: list[tuple[str | None, MemoryObjectSendStream[WatchEvent]]] = []
        # On zeroconf's loop only: each instance's announcements still being
        # repeated, and the tasks we started there.
        self._broadcasts: dict[str, _Cancellable] = {}
        self._tasks: set[object] = set()

    # -- lifecycle --

    async def __aenter__(self) -> MdnsRegistry:
        async with self._lifecycle_lock():
            if self._open is None:
                self._open = await self._start()
            elif self._open.token.native_token is not anyio.lowlevel.current_token().native_token:
                raise RuntimeError("this MdnsRegistry is open in another event loop")
            await self._users.enter()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # Shielded: a user leaving because it was cancelled must still be counted
        # out, or the registry would stay open (and bound to this event loop).
        with anyio.CancelScope(shield=True):
            async with self._lifecycle_lock():
                if await self._users.exit():
                    state, self._open = self._open, None
                    with self._lock:
                        self._registered.clear()
                    if state is not None:
                        await anyio.to_thread.run_sync(self._close, state)

    def _lifecycle_lock(self) -> anyio.Lock:
        try:
            return self._lifecycle.get()
        except LookupError:
            lock = anyio.Lock()
            self._lifecycle.set(lock)
            return lock

    async def _start(self) -> _Open:
        self._generation += 1
        generation = self._generation
        token = anyio.lowlevel.current_token()
        handler = functools.partial(self._on_state_change, generation, token)
        # The opening thread is abandoned if the caller stops waiting (timeout or
        # cancellation); whatever it opened is then closed, never leaked.
        guard = threading.Lock()
        abandoned = False
        opened: list[tuple[Zeroconf, ServiceBrowser]] = []

        def start() -> tuple[Zeroconf, ServiceBrowser]:
            zc = _open_zeroconf(self.interfaces)
            try:
                browser = ServiceBrowser(
                    zc, self.service_type, handlers=[handler], question_type=DNSQuestionType.QM
                )
            except BaseException:
                zc.close()
                raise
            with guard:
                if not abandoned:
                    opened.append((zc, browser))
                    return zc, browser
            _close_zeroconf(zc, browser)
            raise RuntimeError("abandoned")

        try:
            with anyio.fail_after(OPEN_TIMEOUT):
                zc, browser = await anyio.to_thread.run_sync(start, abandon_on_cancel=True)
        except BaseException as exc:
            with guard:
                abandoned = True
                leftovers = list(opened)
            with anyio.CancelScope(shield=True):
                for left in leftovers:
                    await anyio.to_thread.run_sync(_close_zeroconf, *left)
            if isinstance(exc, TimeoutError):
                raise RegistryUnavailable(
                    f"mDNS did not start within {OPEN_TIMEOUT:g} s; {_ALTERNATIVE}"
                ) from None
            raise
        assert zc.loop is not None
        zc.loop.call_soon_threadsafe(self._sweep, zc)
        return _Open(
            zeroconf=zc,
            browser=browser,
            token=token,
            generation=generation,
            changes=anyio.Lock(),
            ready_at=time.monotonic() + INITIAL_WAIT,
        )

    def _state(self) -> _Open:
        if self._open is None:
            raise RegistryUnavailable(
                "the mDNS registry is not open: use `async with MdnsRegistry(...)`"
            )
        return self._open

    def _close(self, state: _Open) -> None:
        """In a worker thread: stop repeating announcements, stop browsing, close."""
        try:
            self._run_on_zeroconf_loop(state.zeroconf, self._stop_broadcasts)
        except (RuntimeError, OSError) as exc:
            log.debug("mDNS registry: closing: %s", exc)
        _close_zeroconf(state.zeroconf, state.browser)

    async def _stop_broadcasts(self) -> None:
        while self._broadcasts:
            self._broadcasts.popitem()[1].cancel()

    # -- registration --

    async def register(self, service: ServiceRecord, *, ttl: float | None = None) -> None:
        state = self._state()
        record_ttl = DEFAULT_RECORD_TTL if ttl is None else max(MIN_RECORD_TTL, math.ceil(ttl))
        # Build every node's records first, so a bad node registers none.
        infos = [self._service_info(service, node, record_ttl) for node in service.nodes]
        async with state.changes:
            for info in infos:
                await self._register_node(state, info, record_ttl, ttl)

    async def _register_node(
        self, state: _Open, info: ServiceInfo, record_ttl: int, ttl: float | None
    ) -> None:
        zc = state.zeroconf
        key = info.name
        deadline = None if ttl is None else time.monotonic() + ttl
        assert zc.loop is not None
        with self._lock:
            # From here on the browser's news of this node is ignored: ours is newer.
            state.withdrawn.discard(key)
            held = self._registered.get(key)
            new = held is None
            if held is None:
                held = self._registered[key] = _Registration(info, record_ttl, deadline)
            else:
                held.deadline = deadline  # moved under the lock: expiry sees it
            old_info, old_ttl = held.info, held.record_ttl
            held.info, held.record_ttl = info, record_ttl  # what re-announcements send
        try:
            if new:
                await self._announce(zc, _REGISTER, info)
            elif (
                old_info.text != info.text
                or old_ttl != record_ttl
                or old_info.port != info.port
                or old_info.addresses_by_version(IPVersion.All)
                != info.addresses_by_version(IPVersion.All)
            ):
                await self._announce(zc, _UPDATE, info)
        except BaseException:
            if new:
                with self._lock:
                    if self._registered.get(key) is held:
                        del self._registered[key]
            raise
        if new:
            zc.loop.call_soon_threadsafe(
                zc.loop.call_later, record_ttl / 3, self._reannounce, zc, key, held
            )
        if deadline is not None:
            zc.loop.call_soon_threadsafe(self._arm_expiry, zc, key, held)
        self._apply(state, key, _decode(info))

    async def deregister(self, service: ServiceRecord) -> None:
        state = self._state()
        async with state.changes:
            for node in service.nodes:
                key = self._instance_name(service, node)
                with self._lock:
                    held = self._registered.pop(key, None)
                    if held is not None:
                        state.withdrawn.add(key)  # ignore the browser's news until it is gone
                if held is None:
                    # Not announced by us (or already withdrawn at its TTL): another
                    # host's node cannot be withdrawn from here.
                    continue
                await self._announce(state.zeroconf, _UNREGISTER, held.info)
                self._apply(state, key, None)

    # -- expiry, on zeroconf's thread --

    def _arm_expiry(self, zc: Zeroconf, key: str, held: _Registration) -> None:
        if held.armed or held.deadline is None or zc.loop is None:
            return
        held.armed = True
        zc.loop.call_later(max(0.0, held.deadline - time.monotonic()), self._expire, zc, key, held)

    def _expire(self, zc: Zeroconf, key: str, held: _Registration) -> None:
        held.armed = False
        with self._lock:
            if self._registered.get(key) is not held or held.deadline is None:
                return
            if held.deadline > time.monotonic():  # re-registered meanwhile
                self._arm_expiry(zc, key, held)
                return
            del self._registered[key]
            state = self._open
            if state is not None and state.zeroconf is zc:
                state.withdrawn.add(key)  # reads skip it now; the DELETE comes with the goodbye
        if zc.done or zc.loop is None:
            return
        log.info("mDNS registry: %s was not re-registered within its TTL; withdrawing it", key)
        self._start_task(zc, self._withdraw(zc, held.info))

    async def _withdraw(self, zc: Zeroconf, info: ServiceInfo) -> None:
        try:
            await self._broadcast(zc, _UNREGISTER, info)
        except Exception:
            log.warning("mDNS registry: withdrawing %s failed", info.name, exc_info=True)

    def _sweep(self, zc: Zeroconf) -> None:
        """Every SWEEP_INTERVAL: drop expired records, and end the instances whose SRV
        record expired, so watchers hear of a node that died silently within
        SWEEP_INTERVAL of its record TTL.

        zeroconf's browser reports an instance gone only when its PTR record
        expires, and zeroconf stretches a received PTR's TTL to at least
        1125 s; so a node is judged by its SRV record, which keeps the TTL its
        owner gave it. An instance whose SRV record is gone gets its PTR
        record removed here, as a goodbye would: the browser then reports it.
        """
        if zc.done or zc.loop is None:
            return
        now = current_time_millis()
        cache = zc.cache
        updates = [RecordUpdate(r, r) for r in cache.async_expire(now)]
        for pointer in cache.async_all_by_details(self.service_type, _TYPE_PTR, _CLASS_IN):
            assert isinstance(pointer, DNSPointer)
            if (
                pointer.alias in self._registered
                or now - pointer.created < SRV_GRACE_MS
                or _has_srv(cache.async_all_by_details(pointer.alias, _TYPE_SRV, _CLASS_IN), now)
            ):
                continue
            goodbye = DNSPointer(pointer.name, _TYPE_PTR, _CLASS_IN, 0, pointer.alias, created=now)
            cache.async_remove_records([pointer])
            updates.append(RecordUpdate(goodbye, pointer))
        if updates:
            zc.record_manager.async_updates(now, updates)
            zc.record_manager.async_updates_complete(False)
        zc.loop.call_later(SWEEP_INTERVAL, self._sweep, zc)

    def _reannounce(self, zc: Zeroconf, key: str, held: _Registration) -> None:
        """Every third of the record TTL while registered: announce the node's records
        once more, so peers' copies never expire while its owner lives."""
        if zc.done or zc.loop is None or self._registered.get(key) is not held:
            return
        zc.async_send(zc.generate_service_broadcast(held.info, None))
        zc.loop.call_later(held.record_ttl / 3, self._reannounce, zc, key, held)

    # -- announcements, on zeroconf's loop --

    async def _announce(self, zc: Zeroconf, kind: str, info: ServiceInfo) -> None:
        """Register, update or unregister ``info``; return once the first packet is out.

        zeroconf repeats each announcement (three times over 0.45 s); its
        blocking API waits for all of them. We wait for the first, and cancel
        whatever is still repeating for the instance when it changes again, so
        a late repeat can never contradict the newest state.
        """
        with _unavailable(kind):
            await anyio.to_thread.run_sync(
                self._run_on_zeroconf_loop, zc, functools.partial(self._broadcast, zc, kind, info)
            )

    async def _broadcast(self, zc: Zeroconf, kind: str, info: ServiceInfo) -> None:
        previous = self._broadcasts.pop(info.name, None)
        if previous is not None:
            previous.cancel()
        if kind != _REGISTER:
            _drop_queued_answers(zc, info.name)
        if kind == _REGISTER:
            try:
                repeats = await zc.async_register_service(info, cooperating_responders=True)
            except ServiceNameAlreadyRegistered:  # still held from before: same thing
                repeats = await zc.async_update_service(info)
        elif kind == _UPDATE:
            repeats = await zc.async_update_service(info)
        else:
            repeats = await zc.async_unregister_service(info)
        future = cast(_Cancellable, repeats)
        self._broadcasts[info.name] = future

        def done(_: object) -> None:
            if self._broadcasts.get(info.name) is future:
                del self._broadcasts[info.name]

        future.add_done_callback(done)

    def _run_on_zeroconf_loop(
        self, zc: Zeroconf, coroutine: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """In a worker thread: run ``coroutine()`` on zeroconf's loop and wait for it."""
        loop = zc.loop
        if loop is None or zc.done:
            raise RuntimeError("zeroconf has stopped")
        outcome: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def run() -> None:
            try:
                await coroutine()
            except BaseException as exc:  # handed to the waiting thread
                outcome.set_exception(exc)
            else:
                outcome.set_result(None)

        loop.call_soon_threadsafe(lambda: self._start_task(zc, run()))
        outcome.result(OPEN_TIMEOUT)

    def _start_task(self, zc: Zeroconf, coroutine: Coroutine[Any, Any, None]) -> None:
        """On zeroconf's loop: run ``coroutine`` as a task we keep a reference to."""
        assert zc.loop is not None
        task = zc.loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lookup --

    async def get_service(self, name: str) -> list[ServiceRecord]:
        state = self._state()
        records = self._live(state, name)
        while not records and (wait := state.ready_at - time.monotonic()) > 0:
            with anyio.move_on_after(wait):
                await state.changed.wait()
            records = self._live(state, name)
        if not records:
            raise ServiceNotFound(f"service {name} not found")
        return records

    async def list_services(self) -> list[ServiceRecord]:
        state = self._state()
        await _sleep_until(state.ready_at)
        return self._live(state, None)

    def _live(self, state: _Open, name: str | None) -> list[ServiceRecord]:
        """The view's fresh nodes of ``name`` (or all), one record per (name, version)."""
        cache = state.zeroconf.cache
        now = current_time_millis()
        grouped: dict[tuple[str, str], ServiceRecord] = {}
        for key, record in list(state.view.items()):
            if name is not None and record.name != name:
                continue
            if key in state.withdrawn:
                continue  # ours, withdrawn: the browser has not yet reported it gone
            if key not in self._registered and not _has_srv(
                cache.get_all_by_details(key, _TYPE_SRV, _CLASS_IN), now
            ):
                continue  # its SRV record expired: the node is gone, the sweep is late
            seen = grouped.get((record.name, record.version))
            grouped[(record.name, record.version)] = (
                record if seen is None else replace(seen, nodes=seen.nodes + record.nodes)
            )
        return list(grouped.values())

    @contextlib.asynccontextmanager
    async def watch(self, service: str | None = None) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        async with self:  # the watch keeps the registry open
            send, receive = anyio.create_memory_object_stream[WatchEvent](WATCH_BUFFER)
            entry = (service, send)
            self._watchers.append(entry)
            try:
                async with receive:
                    yield receive
            finally:
                self._watchers.remove(entry)
                send.close()

    # -- the browser's reports --

    def _on_state_change(
        self,
        generation: int,
        token: anyio.lowlevel.EventLoopToken,
        *,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        """Runs on the browser's thread: resolve, decode, hand over to the event loop."""
        record: ServiceRecord | None = None
        if state_change is not ServiceStateChange.Removed:
            info = ServiceInfo(service_type, name)
            try:
                # Announcements and answers carry all of a node's records in one
                # go, so the cache almost always has them. If the instance is
                # already gone again, do not wait to resolve it: a Removed follows.
                if not info.load_from_cache(zeroconf) and (
                    zeroconf.cache.current_entry_with_name_and_alias(service_type, name) is None
                    or not info.request(zeroconf, RESOLVE_TIMEOUT_MS, DNSQuestionType.QM)
                ):
                    return  # not answered in time; its next announcement retries
            except Exception as exc:  # never let the browser's thread die
                log.debug("mDNS registry: cannot resolve %s: %s", name, exc)
                return
            record = _decode(info)
            if record is None:
                return  # not a micro node (or a newer format): not ours to show
        try:
            anyio.from_thread.run_sync(self._report, generation, name, record, token=token)
        except Exception as exc:  # the event loop has ended; nothing left to tell
            log.debug("mDNS registry: dropped a report about %s: %s", name, exc)

    def _report(self, generation: int, key: str, record: ServiceRecord | None) -> None:
        """On the event loop: apply a browser report unless it is about our own node."""
        state = self._open
        if state is None or state.generation != generation or key in self._registered:
            return
        if key in state.withdrawn:
            if record is None:
                state.withdrawn.discard(key)
                self._apply(state, key, None)
            return
        self._apply(state, key, record)

    def _apply(self, state: _Open, key: str, record: ServiceRecord | None) -> None:
        old = state.view.get(key)
        if record is None:
            if old is None:
                return
            del state.view[key]
            self._notify(EventType.DELETE, old)
        elif old is None:
            state.view[key] = record
            self._notify(EventType.CREATE, record)
        elif old != record:
            state.view[key] = record
            self._notify(EventType.UPDATE, record)
        else:
            return
        state.changed.set()
        state.changed = anyio.Event()

    def _notify(self, kind: EventType, record: ServiceRecord) -> None:
        for name, send in list(self._watchers):
            if name is None or name == record.name:
                try:
                    send.send_nowait(WatchEvent(kind, record))
                except anyio.WouldBlock:
                    send.close()  # a watcher this far behind must resync
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass

    # -- records --

    def _instance_name(self, service: ServiceRecord, node: Node) -> str:
        digest = hashlib.sha256(
            "\0".join((service.name, service.version, node.id)).encode()
        ).hexdigest()[:16]
        readable = re.sub(r"[^A-Za-z0-9-]+", "-", node.id).strip("-")[:_LABEL_PREFIX]
        label = f"{readable}-{digest}" if readable else digest
        return f"{label}.{self.service_type}"

    def _service_info(self, service: ServiceRecord, node: Node, record_ttl: int) -> ServiceInfo:
        host, port = _split_address(node.address)
        txt = encode_txt(service, node)
        if len(txt) > MAX_TXT_BYTES:
            raise PayloadTooLarge(
                f"the mDNS record of {service.name} node {node.id} is {len(txt)} bytes "
                f"compressed, over the {MAX_TXT_BYTES} bytes one mDNS packet can carry; "
                "use smaller metadata or endpoint schemas, or a registry without this limit "
                "(MICRO_REGISTRY=etcd://host:port)",
                id=service.name,
            )
        instance = self._instance_name(service, node)
        return ServiceInfo(
            self.service_type,
            instance,
            port=port,
            server=instance,  # the SRV target: the A/AAAA records share the instance's name
            properties=txt,
            parsed_addresses=self._advertised_addresses(host),
            host_ttl=record_ttl,
            other_ttl=record_ttl,
        )

    def _advertised_addresses(self, host: str) -> list[str]:
        """The A/AAAA addresses of a node: its host if that is an IP address, else
        (unspecified, or a host name) this host's addresses on the interfaces in
        use. Peers need at least one to resolve the instance; a node's address
        in its TXT record is what clients dial, with an unspecified host
        replaced by the address it was announced from."""
        try:
            if not ipaddress.ip_address(host).is_unspecified:
                return [host]
        except ValueError:
            pass  # a host name
        configured = [
            i
            for i in self.interfaces or ()
            if isinstance(i, str) and _is_ip(i) and not ipaddress.ip_address(i).is_unspecified
        ]
        if configured:
            return configured
        import ifaddr

        found = {
            str(address.ip)
            for adapter in ifaddr.get_adapters()
            for address in adapter.ips
            if address.is_IPv4 and not str(address.ip).startswith("127.")
        }
        return sorted(found) or ["127.0.0.1"]


# -- zeroconf, in worker threads --

_ALTERNATIVE = (
    "multicast DNS needs a network interface with multicast; use another registry, "
    "e.g. MICRO_REGISTRY=etcd://host:port, or MICRO_REGISTRY=memory within one process"
)


def _open_zeroconf(interfaces: list[str | int] | None) -> Zeroconf:
    """A started Zeroconf on ``interfaces`` (all when None), or RegistryUnavailable."""
    where = "every interface" if interfaces is None else ", ".join(map(str, interfaces))
    try:
        zc = Zeroconf() if interfaces is None else Zeroconf(interfaces=interfaces)
    except (OSError, ZeroconfError, RuntimeError, ValueError) as exc:
        raise RegistryUnavailable(
            f"cannot use multicast DNS on {where} ({exc}); {_ALTERNATIVE}"
        ) from exc
    if not zc.engine.senders:  # every interface was skipped: nothing could be sent
        zc.close()
        raise RegistryUnavailable(
            f"cannot use multicast DNS on {where} (no interface could join the group); "
            f"{_ALTERNATIVE}"
        )
    return zc


def _close_zeroconf(zc: Zeroconf, browser: ServiceBrowser) -> None:
    """Stop browsing and close zeroconf, which says goodbye for the nodes it announces."""
    try:
        browser.cancel()
    finally:
        zc.close()


def _drop_queued_answers(zc: Zeroconf, instance: str) -> None:
    """On zeroconf's loop: forget multicast answers about ``instance`` still queued.

    zeroconf delays multicast answers (RFC 6762: 20-120 ms, or until a second
    after the record was last multicast) and sends them even if the service
    changed or left meanwhile, which would bring back a withdrawn node (until
    its record TTL) or its old data.
    """
    key = instance.lower()

    def about(record: DNSRecord) -> bool:
        return record.key == key or (isinstance(record, DNSPointer) and record.alias.lower() == key)

    for outgoing in (zc.out_queue, zc.out_delay_queue):
        for group in outgoing.queue:
            answers = group.answers
            for record in list(answers):
                if about(record):
                    del answers[record]
                else:
                    answers[record] = {a for a in answers[record] if not about(a)}


class _Cancellable(Protocol):
    """What zeroconf returns for an announcement still being repeated (a future)."""

    def cancel(self) -> bool: ...

    def add_done_callback(self, fn: Callable[[Any], object], /) -> None: ...


_REGISTER, _UPDATE, _UNREGISTER = "registering", "updating", "unregistering"


@contextlib.contextmanager
def _unavailable(doing: str) -> Iterator[None]:
    try:
        yield
    except (ZeroconfError, OSError, RuntimeError) as exc:  # TimeoutError is an OSError
        raise RegistryUnavailable(f"mDNS registry: {doing} failed: {exc!r}") from exc


# -- the TXT record --


def _decode(info: ServiceInfo) -> ServiceRecord | None:
    """The node record in ``info``'s TXT record; None if it holds none we can read."""
    try:
        record = decode_txt(info.text or b"")
        if record is not None:
            record = replace(record, nodes=(_reachable(record.nodes[0], info),))
    except (ValueError, TypeError, KeyError, AttributeError, zlib.error) as exc:
        log.warning("mDNS registry: ignoring %s, its TXT record is unreadable: %s", info.name, exc)
        return None
    return record


def _reachable(node: Node, info: ServiceInfo) -> Node:
    """A node listening on an unspecified address gets the address it was announced from."""
    try:
        host, port = _split_address(node.address)
        unspecified = ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return node
    if not unspecified:
        return node
    addresses = sorted(info.parsed_addresses(), key=lambda a: (":" in a, a))
    if not addresses:
        return node
    ip = addresses[0]
    return replace(node, address=f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")


# -- small helpers --


def _has_srv(records: list[DNSRecord], now: float) -> bool:
    return any(r.type == _TYPE_SRV and not r.is_expired(now) for r in records)


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"node address {address!r} is not host:port")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _interfaces_from_env() -> list[str | int] | None:
    raw = os.environ.get(INTERFACES_ENV, "").strip()
    if not raw:
        return None
    return [int(i) if i.isdigit() else i for i in (p.strip() for p in raw.split(",")) if i]


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        await anyio.sleep(delay)
