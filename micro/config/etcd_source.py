"""Config in etcd: every key under a prefix, kept current by an etcd watch.

Keys below the prefix are paths: with prefix ``/config/app``, the key
``/config/app/database/host`` is ``database.host``. The prefix key itself may
hold a whole JSON document (an object) that the keys below it override, key by
key. Values are JSON (``5432``, ``true``, ``["a","b"]``, ``{"host": "db"}``)
or, when they are not JSON, plain strings (``db1``), so ``etcdctl put`` works
without quoting. A value that looks like a JSON array or object but does not
parse is an error: at load it fails the source, while running it is logged
and the key keeps its last good value.

Watching: read every key (a resync), then watch from the revision after that
read, so no change falls between the two. When the stream breaks (etcd
restarted, the network failed) or its start revision was compacted away, read
everything again and watch again: the resync catches whatever changed while
the watch was down. While etcd is unreachable, retries back off exponentially
up to ``max_backoff`` seconds; the first failure and the recovery are logged,
the retries in between only at debug level.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
import anyio.abc
import tenacity

from ..errors import MicroError
from ..etcd import DEFAULT_ENDPOINT, EtcdClient, KeyEvent, RevisionCompacted, shared_client
from ..supervisor import backoff_delay
from .base import Changed, SourceInvalid, SourceUnavailable
from .merge import merge, nest

__all__ = ["EtcdSource", "etcd"]

log = logging.getLogger("micro.config")

#: the longest wait between reconnection attempts; short enough that a config
#: change after an etcd outage is seen promptly, long enough to cost nothing
DEFAULT_MAX_BACKOFF = 5.0
#: the first wait between reconnection attempts
INITIAL_BACKOFF = 0.1


class EtcdSource:
    """Keys under ``key_prefix`` in etcd, as a tree; ``client`` shares one EtcdClient."""

    def __init__(
        self,
        key_prefix: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        optional: bool = False,
        client: EtcdClient | None = None,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
    ) -> None:
        self.prefix = key_prefix.rstrip("/") or "/"
        self.client = client if client is not None else shared_client(endpoint)
        self.optional = optional
        self.name = f"etcd {self.client.endpoint} {self.prefix}"
        self._wait = tenacity.wait_exponential_jitter(
            multiplier=INITIAL_BACKOFF, max=max_backoff, jitter=INITIAL_BACKOFF
        )
        self._values: dict[bytes, Any] = {}  # parsed value of each key, last good
        self._failures = 0  # consecutive failures to reach etcd (the load's included)

    # -- load --

    async def load(self) -> dict[str, Any]:
        try:
            async with self.client:
                revision = await self._resync(strict=True)
        except SourceInvalid:
            raise
        except MicroError as exc:
            self._failures = 1  # the watcher then logs the recovery, not the failure again
            raise SourceUnavailable(f"{exc.detail} (reading config under {self.prefix})") from exc
        self._failures = 0
        log.debug("config: read %d keys from %s at %d", len(self._values), self.name, revision)
        return self._tree()

    async def _resync(self, *, strict: bool) -> int:
        """Read every key afresh; the revision read at. ``strict``: raise on a bad value."""
        result = await self.client.range(self.prefix.encode(), prefix=True)
        values: dict[bytes, Any] = {}
        for kv in result.kvs:
            if not self._mine(kv.key):
                continue
            try:
                values[kv.key] = self._parse(kv.key, kv.value)
            except SourceInvalid as exc:
                if strict:
                    raise
                log.error("config: %s; keeping its last good value", exc.detail)
                if kv.key in self._values:
                    values[kv.key] = self._values[kv.key]
        self._values = values
        return result.revision

    # -- watch --

    async def watch(
        self,
        changed: Changed,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        attempt = self._failures
        ready = False
        async with self.client:
            while True:
                try:
                    revision = await self._resync(strict=False)
                    changed(self._tree())
                    async with self.client.watch(
                        self.prefix.encode(), prefix=True, start_revision=revision + 1
                    ) as events:
                        if attempt:
                            log.info("config: %s is back; resynced and watching", self.name)
                        attempt = 0
                        if not ready:
                            ready = True
                            task_status.started()
                        async for event in events:
                            if self._apply(event):
                                changed(self._tree())
                    # etcd ended the stream (it is shutting down): resync and watch
                    # again, after a pause in case it keeps doing so.
                    log.info("config: %s closed the watch; resyncing", self.name)
                    await anyio.sleep(self._backoff(1))
                except RevisionCompacted:
                    log.info("config: %s compacted past our watch; resyncing", self.name)
                except MicroError as exc:
                    attempt += 1
                    delay = self._backoff(attempt)
                    level = logging.WARNING if attempt == 1 else logging.DEBUG
                    log.log(level, "config: %s: %s; retrying in %.2fs", self.name, exc, delay)
                    if not ready:  # a source that is down must not hold up the start
                        ready = True
                        task_status.started()
                    await anyio.sleep(delay)

    def _apply(self, event: KeyEvent) -> bool:
        """Apply one change to the local copy; whether anything changed."""
        key = event.kv.key
        if not self._mine(key):
            return False
        if event.type == "DELETE":
            if key not in self._values:
                return False
            del self._values[key]
            return True
        try:
            value = self._parse(key, event.kv.value)
        except SourceInvalid as exc:
            log.error("config: %s; keeping its last good value", exc.detail)
            return False
        if key in self._values and self._values[key] == value:
            return False
        self._values[key] = value
        return True

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(self._wait, attempt)

    # -- keys and values --

    def _mine(self, key: bytes) -> bool:
        """Whether the key is the prefix or below it (``/app`` must not take ``/apple``)."""
        prefix = self.prefix.encode()
        return key == prefix or key.startswith(prefix if prefix.endswith(b"/") else prefix + b"/")

    def _parts(self, key: bytes) -> list[str]:
        rest = key.decode("utf-8", "replace")[len(self.prefix) :]
        return [part for part in rest.split("/") if part]

    def _parse(self, key: bytes, value: bytes) -> Any:
        where = f"{self.name}: key {key.decode('utf-8', 'replace')}"
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise SourceInvalid(f"{where}: the value is not UTF-8") from None
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            if text.strip()[:1] in ("{", "["):
                line, col = getattr(exc, "lineno", 0), getattr(exc, "colno", 0)
                raise SourceInvalid(f"{where}:{line}:{col}: invalid JSON: {exc}") from None
            return text
        if not self._parts(key) and not isinstance(parsed, dict):
            raise SourceInvalid(f"{where}: the prefix key must hold a JSON object")
        return parsed

    def _tree(self) -> dict[str, Any]:
        # Sorted keys put a parent before its children, so deeper keys override.
        return merge(*(nest(self._parts(key), self._values[key]) for key in sorted(self._values)))


def etcd(
    key_prefix: str,
    *,
    endpoint: str = DEFAULT_ENDPOINT,
    optional: bool = False,
    client: EtcdClient | None = None,
    max_backoff: float = DEFAULT_MAX_BACKOFF,
) -> EtcdSource:
    """A source of the keys under ``key_prefix`` in etcd, watched for changes.

    ``optional``: start without it when etcd is unreachable (it is read as soon
    as etcd answers). ``client`` shares an open EtcdClient with other parts.
    """
    return EtcdSource(
        key_prefix, endpoint=endpoint, optional=optional, client=client, max_backoff=max_backoff
    )
