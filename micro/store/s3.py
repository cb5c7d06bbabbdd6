"""A store in S3 or an S3-compatible server (MinIO, Ceph, R2, ...), over httpx.

Theory: each record is one object, ``<prefix><database>/<table>/d/<key>``,
its body the record's value, its metadata in the object's metadata
(``x-amz-meta-micro-metadata``, the JSON in base64, and
``x-amz-meta-micro-expiry``). Database and table names are escaped to
``[A-Za-z0-9_-]`` with ``~XX`` for every other byte. The key is written in an
order-preserving base64 (the alphabet ``-0-9A-Z_a-z``, in ASCII order, no
padding) of its UTF-8 bytes with lone surrogates passed through: every key
round-trips, object names hold only URL-safe characters, and S3's listing
order (by name's bytes) is the keys' code point order. A prefix of a key
encodes to a known prefix of its object's name, give or take its last few
bits, so a prefix query is one ListObjectsV2 range filtered by the decoded
keys; suffixes are filtered the same way.

Expiry: S3 lists names, not metadata, so a record that expires also gets an
empty *marker* object, ``…/x/<expiry in ms, 14 digits>/<key>``, written before
the record. Markers list in expiry order, so the markers whose time has come
are one short listing. A scan reads that listing, and only the keys it names
are checked (a HEAD each): one whose object's own expiry has passed is left
out; a marker left from an earlier write of the key changes nothing. Point
reads check the object's own expiry. So no expired record is returned by any
method. Writes sweep a table at most once a minute: expired records go (a
delete conditional on the ETag seen) and so do markers that served their turn.
A service also runs a sweeper (:mod:`micro.store.sweeper`) that sweeps every
table under the store's prefix each ``sweep_interval``, writes or not.

Durability is S3's: a write returns once the server stored the object. A
record is one object, so writes of different keys never conflict, and two
writes of one key resolve as S3 resolves them: the last one stored wins.

It is one module past the usual size because it is one backend over one object
layout (names, markers and sweeps change together); the S3 calls themselves are
:mod:`micro.store._s3api`.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import math
import os
import re
import time
from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import httpx
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from ..refcount import Users
from ._records import (
    check_scan,
    decode_key,
    decode_metadata,
    encode_key,
    is_live,
    namespace,
    not_open,
    prepare_write,
)
from ._s3api import S3Client
from ._url import seconds_option
from .base import InvalidKey, Record, RecordNotFound, StoreOptions, StoreUnavailable
from .sweeper import WriteSweeps

__all__ = ["S3Store", "DEFAULT_OPTIONS"]

#: S3 keeps at most 1024 bytes of an object's name and 2 KiB of its user metadata,
#: so keys (base64 makes 4 of 3 bytes) and metadata (in base64) have lower limits here
DEFAULT_OPTIONS = StoreOptions(max_key_size=512, max_metadata_size=1024)
#: the longest object name S3 takes, in bytes
MAX_NAME = 1024
#: the most user metadata (JSON bytes) that fits in S3's 2 KiB once in base64
MAX_METADATA = 1400
#: seconds for one HTTP call
DEFAULT_TIMEOUT = 30.0
#: calls one scan makes at once (HEADs and GETs)
DEFAULT_CONCURRENCY = 32
#: seconds between sweeps of a table's expired records (scans skip them in between)
SWEEP_INTERVAL = 60.0
#: most markers one sweep handles
SWEEP_ITEMS = 1000

_STANDARD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ORDERED = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_TO_ORDERED = bytes.maketrans(_STANDARD, _ORDERED)
_FROM_ORDERED = bytes.maketrans(_ORDERED, _STANDARD)
_SAFE_NAME = re.compile(rb"[A-Za-z0-9_-]")
_EXPIRY = "x-amz-meta-micro-expiry"
_METADATA = "x-amz-meta-micro-metadata"


def encode_name(key: bytes) -> str:
    """The object name part for a key: order-preserving base64, no padding."""
    return base64.b64encode(key).translate(_TO_ORDERED).rstrip(b"=").decode("ascii")


def decode_name(name: str) -> bytes:
    """The key bytes from :func:`encode_name`; raises ValueError if it is not one."""
    data = name.encode("ascii").translate(_FROM_ORDERED)
    try:
        return base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not an encoded key: {name!r}") from exc


def _escape(name: str) -> str:
    return "".join(
        chr(b) if _SAFE_NAME.fullmatch(bytes([b])) else f"~{b:02X}"
        for b in name.encode("utf-8", "surrogatepass")
    )


@dataclass(frozen=True, slots=True)
class _Table:
    """Where one table's objects live: records under ``data``, markers under ``markers``."""

    data: str
    markers: str


@dataclass(frozen=True, slots=True)
class _Head:
    """What a GET or HEAD of a record said."""

    etag: str
    expiry: float | None
    metadata: bytes


class S3Store:
    """A Store in an S3 bucket;
    ``async with S3Store("s3://bucket/prefix?endpoint=http://127.0.0.1:9000") as store:``.

    Credentials come from the URL (``s3://KEY:SECRET@bucket/...``), the
    arguments, or ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (and
    ``AWS_SESSION_TOKEN``); with none, calls go unsigned. The region comes
    from ``?region=``, ``AWS_REGION`` or ``AWS_DEFAULT_REGION`` (else
    us-east-1). Without ``endpoint`` the store talks to AWS. ``?timeout=30s``
    bounds one call (its retries included) and ``?sweep_interval=1m`` sets how
    often the service's sweeper deletes expired records; arguments win over both.
    """

    kind = "s3"

    def __init__(
        self,
        url: str = "s3://micro",
        *,
        options: StoreOptions | None = None,
        endpoint: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        timeout: float | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        sweep_interval: float | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname:
            raise ValueError(f"not an s3 URL: {url!r} (use s3://bucket/prefix?endpoint=...)")
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"endpoint", "region", "timeout", "sweep_interval"}
        if unknown:
            raise ValueError(f"unknown options in {url!r}: {', '.join(sorted(unknown))}")
        self.bucket = parts.hostname
        prefix = unquote(parts.path).lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.endpoint = endpoint or query.get("endpoint")
        if self.endpoint is not None and urlsplit(self.endpoint).scheme not in ("http", "https"):
            raise ValueError(f"the endpoint {self.endpoint!r} must be an http:// or https:// URL")
        self.region = (
            region
            or query.get("region")
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        access_key = access_key or (unquote(parts.username) if parts.username else None)
        secret_key = secret_key or (unquote(parts.password) if parts.password else None)
        if access_key is None:
            access_key = os.environ.get("AWS_ACCESS_KEY_ID")
            secret_key = secret_key or os.environ.get("AWS_SECRET_ACCESS_KEY")
            session_token = session_token or os.environ.get("AWS_SESSION_TOKEN")
        credentials = None
        if access_key:
            credentials = Credentials(access_key, secret_key or "", session_token)
        self.options = options if options is not None else DEFAULT_OPTIONS
        if self.options.max_metadata_size > MAX_METADATA:
            raise ValueError(
                f"max_metadata_size {self.options.max_metadata_size} is over what S3 keeps "
                f"with an object (2 KiB of metadata, so at most {MAX_METADATA} bytes of JSON)"
            )
        self.concurrency = concurrency
        self.timeout = seconds_option(timeout, query, "timeout", DEFAULT_TIMEOUT)
        #: seconds between the service's sweeps of expired records (see :meth:`sweep_all`)
        self.sweep_interval = seconds_option(
            sweep_interval, query, "sweep_interval", SWEEP_INTERVAL
        )
        self._client = S3Client(
            self.bucket,
            endpoint=self.endpoint,
            region=self.region,
            credentials=credentials,
            timeout=self.timeout,
        )
        self._users = Users()
        self._open = False
        self._limiter: anyio.CapacityLimiter | None = None
        self._sweeps = WriteSweeps(self.kind, SWEEP_INTERVAL)

    @property
    def where(self) -> str:
        return self._client.where

    # -- lifecycle --

    async def __aenter__(self) -> S3Store:
        await self._users.enter(self._connect)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._users.exit(self._disconnect)

    async def _connect(self) -> None:
        await self._client.open()
        self._limiter = anyio.CapacityLimiter(max(1, self.concurrency))
        self._open = True

    async def _disconnect(self) -> None:
        self._open = False
        with anyio.CancelScope(shield=True):
            await self._client.close()

    # -- the Store protocol --

    async def read(
        self,
        key: str,
        *,
        prefix: bool = False,
        suffix: bool = False,
        limit: int | None = None,
        offset: int = 0,
        database: str | None = None,
        table: str | None = None,
    ) -> builtins.list[Record]:
        names = self._table(database, table)
        if prefix or suffix:
            keys = await self._scan(
                names, key if prefix else "", key if suffix else "", limit, offset
            )
            return await self._get_all(names, keys)
        data = encode_key(key, self.options, self.kind)
        record = await self._get(names, data)
        if record is None:
            raise RecordNotFound(f"no record {key!r}")
        return [record]

    async def list(
        self,
        *,
        prefix: str = "",
        suffix: str = "",
        limit: int | None = None,
        offset: int = 0,
        database: str | None = None,
        table: str | None = None,
    ) -> builtins.list[str]:
        names = self._table(database, table)
        keys = await self._scan(names, prefix, suffix, limit, offset)
        return [decode_key(k) for k in keys]

    async def write(
        self,
        record: Record,
        *,
        ttl: float | None = None,
        expiry: float | None = None,
        database: str | None = None,
        table: str | None = None,
    ) -> None:
        self._check_open()
        done = prepare_write(
            record, self.options, self.kind, ttl=ttl, expiry=expiry, database=database, table=table
        )
        names = self._table(done.database, done.table)
        name = self._name(names, done.key, marker=done.expiry is not None)
        headers = {"content-type": "application/octet-stream"}
        if done.metadata:
            headers[_METADATA] = base64.b64encode(done.metadata).decode("ascii")
        if done.expiry is not None:
            headers[_EXPIRY] = repr(done.expiry)
            # The marker first: a record that expires is never without one.
            marker = f"{names.markers}{math.floor(done.expiry * 1000):014d}/{name}"
            await self._client.call("PUT", marker)
        await self._client.call("PUT", names.data + name, headers=headers, body=done.value)
        await self._sweeps.after_write(names.data, partial(self._sweep, names))

    async def delete(
        self, key: str, *, database: str | None = None, table: str | None = None
    ) -> None:
        names = self._table(database, table)
        data = encode_key(key, self.options, self.kind)
        name = self._name(names, data, marker=False)
        await self._client.call("DELETE", names.data + name, expect=(200, 204))

    async def sweep(self, *, database: str | None = None, table: str | None = None) -> int:
        """Delete the table's expired records and spent markers now (writes do it once a
        minute); returns how many records went. Raises :class:`StoreUnavailable`."""
        return await self._sweep(self._table(database, table))

    async def sweep_all(self) -> int:
        """Sweep every table under the store's prefix (the service's sweeper calls it
        each ``sweep_interval``); returns how many records went. Raises
        :class:`StoreUnavailable`."""
        self._check_open()
        deleted = 0
        for database in await self._client.folders(self.prefix):
            for table in await self._client.folders(database):
                deleted += await self._sweep(_Table(table + "d/", table + "x/"))
        return deleted

    # -- internals --

    async def _get(self, names: _Table, key: bytes) -> Record | None:
        name = self._name(names, key, marker=False)
        response = await self._client.call("GET", names.data + name, expect=(200, 404))
        if response.status_code == 404:
            return None
        head = _head(response)
        if not is_live(head.expiry, time.time()):
            return None
        return Record(
            decode_key(key), response.content, decode_metadata(head.metadata), head.expiry
        )

    async def _head(self, names: _Table, name: str) -> _Head | None:
        response = await self._client.call("HEAD", names.data + name, expect=(200, 404))
        return None if response.status_code == 404 else _head(response)

    async def _get_all(self, names: _Table, keys: builtins.list[bytes]) -> builtins.list[Record]:
        found: builtins.list[Record | None] = [None] * len(keys)

        async def get(i: int, key: bytes) -> None:
            assert self._limiter is not None
            async with self._limiter:
                found[i] = await self._get(names, key)

        async with anyio.create_task_group() as tg:
            for i, key in enumerate(keys):
                tg.start_soon(get, i, key)
        return [record for record in found if record is not None]

    async def _expired(self, names: _Table, now: float) -> builtins.list[tuple[str, str]]:
        """(marker, record name) of each marker whose time has come, oldest first."""
        limit = f"{math.floor(now * 1000):014d}"
        found: builtins.list[tuple[str, str]] = []
        async for page in self._client.list(names.markers):
            for item in page:
                stamp, _, name = item.name[len(names.markers) :].partition("/")
                if stamp > limit:
                    return found
                found.append((item.name, name))
        return found

    async def _scan(
        self, names: _Table, prefix: str, suffix: str, limit: int | None, offset: int
    ) -> builtins.list[bytes]:
        """Keys of live records with the prefix and suffix, in order, paged."""
        self._check_open()
        start, end = check_scan(prefix, suffix, limit, offset)
        if limit == 0:
            return []
        now = time.time()
        suspects = {name for _, name in await self._expired(names, now)}
        # The characters of the prefix's encoding that its bits fully decide.
        known = encode_name(start)[: len(start) * 8 // 6]
        keys: builtins.list[bytes] = []
        skipped = 0
        async for page in self._client.list(names.data + known):
            matched = []
            for item in page:
                name = item.name[len(names.data) :]
                try:
                    key = decode_name(name)
                except ValueError:
                    continue  # not ours
                if key.startswith(start) and key.endswith(end):
                    matched.append((name, key))
            expired = await self._check_expired(
                [n for n, _ in matched if n in suspects], names, now
            )
            for name, key in matched:
                if name in expired:
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                keys.append(key)
                if limit is not None and len(keys) >= limit:
                    return keys
        return keys

    async def _check_expired(
        self, candidates: builtins.list[str], names: _Table, now: float
    ) -> set[str]:
        """The names among ``candidates`` whose record has expired by ``now``."""
        expired: set[str] = set()

        async def check(name: str) -> None:
            assert self._limiter is not None
            async with self._limiter:
                head = await self._head(names, name)
            if head is None or not is_live(head.expiry, now):
                expired.add(name)

        async with anyio.create_task_group() as tg:
            for name in candidates:
                tg.start_soon(check, name)
        return expired

    async def _sweep(self, names: _Table) -> int:
        now = time.time()
        deleted = 0
        for marker, name in (await self._expired(names, now))[:SWEEP_ITEMS]:
            head = await self._head(names, name)
            if head is not None and not is_live(head.expiry, now):
                # Only the object seen expired: a newer write of the key changed its ETag.
                response = await self._client.call(
                    "DELETE",
                    names.data + name,
                    headers={"if-match": f'"{head.etag}"'},
                    expect=(200, 204, 404, 412),
                )
                deleted += response.status_code in (200, 204)
            await self._client.call("DELETE", marker, expect=(200, 204, 404))
        return deleted

    def _table(self, database: str | None, table: str | None) -> _Table:
        self._check_open()
        database, table = namespace(self.options, database, table)
        base = f"{self.prefix}{_escape(database)}/{_escape(table)}/"
        return _Table(base + "d/", base + "x/")

    def _name(self, names: _Table, key: bytes, *, marker: bool) -> str:
        """The key's part of its object's name; raises InvalidKey if S3 cannot take it."""
        name = encode_name(key)
        longest = len(names.markers) + 15 + len(name) if marker else len(names.data + name)
        if longest > MAX_NAME:
            raise InvalidKey(
                f"the key's object name would be {longest} bytes, over S3's {MAX_NAME}: "
                "shorten the key, the table or database name, or the store's prefix"
            )
        return name

    def _check_open(self) -> None:
        if not self._open:
            raise not_open(self.kind)


def _head(response: httpx.Response) -> _Head:
    try:
        raw = response.headers.get(_EXPIRY)
        expiry = float(raw) if raw else None
        metadata = base64.b64decode(response.headers.get(_METADATA, ""), validate=True)
    except (ValueError, binascii.Error) as exc:
        raise StoreUnavailable(f"an object in the s3 store has bad metadata: {exc}") from None
    return _Head(response.headers.get("etag", "").strip('"'), expiry, metadata)
