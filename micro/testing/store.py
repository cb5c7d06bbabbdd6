"""A conformance suite every Store runs, backends of micro's and users' alike.

``await check_store(factory)`` runs every check; ``STORE_CHECKS`` names them
one by one for a test per check. ``factory`` makes a new, unopened store;
each check opens it with ``async with`` and works in a database no other
check (or run) uses, so a shared backend server needs no cleanup between
checks. Expiry is checked by waiting until a record's expiry has passed and
then requiring it gone at once: stores promise that exactly, so the wait
decides nothing.

It is one module past the usual size because a suite is read as a whole: short
checks, the helpers they share, and the list that runs them, in one place.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio

from ..errors import BadRequest
from ..store.base import (
    InvalidKey,
    Record,
    RecordNotFound,
    Store,
    StoreUnavailable,
    ValueTooLarge,
)
from ..store.table import Table

__all__ = [
    "STORE_CHECKS",
    "StoreFactory",
    "check_store",
    "check_write_read_delete",
    "check_read_prefix_and_suffix",
    "check_list_options",
    "check_namespaces",
    "check_ttl_expiry",
    "check_large_values",
    "check_unicode_and_binary_keys",
    "check_pagination",
    "check_bad_input",
    "check_closed_store",
    "check_typed_values",
    "check_concurrent_writes",
]

StoreFactory = Callable[[], Store]
E = TypeVar("E", bound=Exception)

#: keys the pagination check writes and pages through
PAGINATION_KEYS = 10_000
#: writes in flight at once when a check writes many records
WRITERS = 64
#: seconds a TTL record lives in the expiry check
TTL = 0.5

#: keys every store must round-trip and list in code point order
ODD_KEYS = [
    "plain",
    "ünïcødé",
    "日本語/キー",
    "emoji-🚀",
    "nul\x00inside",
    "\x01\x02\x1f control",
    "tab\tand\nnewline",
    "slash/and%percent",
    "colon:{brace}*?",
    "\x7f delete",
    "\ud800 lone surrogate",
    "\U0010ffff last code point",
    " spaced ",
    "back\\slash",
    "\u00ff\u0100 around",
]


def unique_database(stem: str) -> str:
    return f"conform-{stem}-{uuid.uuid4().hex[:10]}"


async def _write_many(store: Store, keys: list[str], database: str, value: bytes = b"v") -> None:
    """Write ``keys`` with WRITERS writes in flight."""
    pending = iter(keys)

    async def writer() -> None:
        for key in pending:
            await store.write(Record(key, value), database=database)

    async with anyio.create_task_group() as tg:
        for _ in range(WRITERS):
            tg.start_soon(writer)


async def _write(store: Store, record: Record, database: str) -> None:
    await store.write(record, database=database)


async def _delete(store: Store, key: str, database: str) -> None:
    await store.delete(key, database=database)


async def _missing(store: Store, key: str, **where: Any) -> bool:
    try:
        await store.read(key, **where)
    except RecordNotFound:
        return True
    return False


async def check_write_read_delete(factory: StoreFactory) -> None:
    """A written record reads back exactly; a rewrite replaces it; a delete removes it."""
    db = unique_database("basic")
    async with factory() as store:
        assert await _missing(store, "k", database=db), "reading a never-written key must raise"
        await store.write(Record("k", b"one", {"n": 1, "tags": ["a", "b"]}), database=db)
        [record] = await store.read("k", database=db)
        assert record == Record("k", b"one", {"n": 1, "tags": ["a", "b"]}), record
        await store.write(Record("k", b"", {}), database=db)  # an empty value is a value
        assert await store.read("k", database=db) == [Record("k", b"", {})]
        await store.delete("k", database=db)
        assert await _missing(store, "k", database=db), "a deleted record must be gone"
        assert await store.list(database=db) == []
        await store.delete("k", database=db)  # deleting again is no error


async def check_read_prefix_and_suffix(factory: StoreFactory) -> None:
    """Prefix, suffix and both select by key, in key order, with limit and offset."""
    db = unique_database("affix")
    keys = ["user/1/name", "user/1/mail", "user/2/name", "users", "group/1/name", "user"]
    async with factory() as store:
        for key in keys:
            await store.write(Record(key, key.encode()), database=db)

        async def read(key: str, **options: Any) -> list[str]:
            records = await store.read(key, database=db, **options)
            for record in records:
                assert record.value == record.key.encode(), record
            return [record.key for record in records]

        assert await read("user/", prefix=True) == ["user/1/mail", "user/1/name", "user/2/name"]
        assert await read("user", prefix=True) == [
            "user",
            "user/1/mail",
            "user/1/name",
            "user/2/name",
            "users",
        ]
        assert await read("/name", suffix=True) == ["group/1/name", "user/1/name", "user/2/name"]
        assert await read("user", prefix=True, suffix=True) == ["user"]
        assert await read("nothing", prefix=True) == []
        assert await read("nothing", suffix=True) == []
        assert await read("user/", prefix=True, limit=2) == ["user/1/mail", "user/1/name"]
        assert await read("user/", prefix=True, offset=1) == ["user/1/name", "user/2/name"]
        assert await read("user/", prefix=True, limit=1, offset=2) == ["user/2/name"]
        assert await read("user/", prefix=True, offset=3) == []
        assert await read("/name", suffix=True, limit=1, offset=1) == ["user/1/name"]
        assert await read("", prefix=True) == sorted(keys)
        assert await read("user/1/name") == ["user/1/name"]  # exact: not a prefix
        assert await _missing(store, "user/1", database=db)


async def check_list_options(factory: StoreFactory) -> None:
    """list selects keys by prefix and suffix, in key order, with limit and offset."""
    db = unique_database("list")
    keys = [f"{kind}-{n:02d}.{ext}" for kind in ("a", "b") for n in range(10) for ext in ("x", "y")]
    async with factory() as store:
        for key in keys:
            await store.write(Record(key, b"v"), database=db)
        assert await store.list(database=db) == sorted(keys)
        assert await store.list(prefix="b-", database=db) == sorted(k for k in keys if k[0] == "b")
        assert await store.list(suffix=".y", database=db) == sorted(k for k in keys if k[-1] == "y")
        both = await store.list(prefix="a-0", suffix=".x", database=db)
        assert both == [f"a-0{n}.x" for n in range(10)], both
        assert await store.list(limit=3, database=db) == sorted(keys)[:3]
        assert await store.list(offset=38, database=db) == sorted(keys)[38:]
        assert await store.list(limit=5, offset=10, database=db) == sorted(keys)[10:15]
        page = await store.list(suffix=".y", limit=2, offset=3, database=db)
        assert page == sorted(k for k in keys if k[-1] == "y")[3:5], page
        assert await store.list(limit=0, database=db) == []
        assert await store.list(prefix="c", database=db) == []
        assert await store.list(offset=1000, database=db) == []


async def check_namespaces(factory: StoreFactory) -> None:
    """Databases and tables keep keys apart; a Table handle works in one of them."""
    db, other_db = unique_database("ns"), unique_database("ns-other")
    async with factory() as store:
        places = [(db, "a"), (db, "b"), (other_db, "a"), (db, "a/b"), (db, "a:b%c")]
        for database, table in places:
            await store.write(
                Record("k", f"{database}.{table}".encode()), database=database, table=table
            )
        for database, table in places:
            [record] = await store.read("k", database=database, table=table)
            assert record.value == f"{database}.{table}".encode(), (database, table, record)
            assert await store.list(database=database, table=table) == ["k"]
        assert await store.list(database=db, table="c") == []
        await store.delete("k", database=db, table="a")
        assert await _missing(store, "k", database=db, table="a")
        [record] = await store.read("k", database=db, table="b")  # others untouched
        assert record.value == f"{db}.b".encode()

        users = Table(store, "users", database=db)
        await users.write(Record("alice", b"1"))
        await users.write(Record("bob", b"2"), ttl=60)
        assert await users.list() == ["alice", "bob"]
        assert [r.key for r in await users.read("", prefix=True)] == ["alice", "bob"]
        assert await store.list(database=db, table="users") == ["alice", "bob"]
        await users.delete("alice")
        assert await users.list() == ["bob"]
        default = Table(store)
        assert (default.database, default.table) == (store.options.database, store.options.table)


async def check_ttl_expiry(factory: StoreFactory) -> None:
    """A record with a TTL or expiry is returned until then and never after, by any
    method; a rewrite without one keeps the record for good."""
    db = unique_database("ttl")
    async with factory() as store:
        started = time.time()
        await store.write(Record("ttl", b"1"), ttl=TTL, database=db)
        await store.write(Record("expiry", b"2"), expiry=started + TTL, database=db)
        await store.write(Record("own-expiry", b"3", expiry=started + TTL), database=db)
        await store.write(Record("kept", b"4"), ttl=TTL, database=db)
        await store.write(Record("kept", b"5"), database=db)  # no TTL any more
        await store.write(Record("long", b"6"), ttl=60, database=db)
        [record] = await store.read("ttl", database=db)
        assert record.expiry is not None and started < record.expiry <= time.time() + TTL, record
        [record] = await store.read("own-expiry", database=db)
        assert record.expiry == started + TTL, record
        assert await store.list(database=db) == ["expiry", "kept", "long", "own-expiry", "ttl"]

        # Wait until every short expiry has passed (a wait, not the assertion).
        await anyio.sleep(max(0.0, started + TTL - time.time()) + 0.05)
        for key in ("ttl", "expiry", "own-expiry"):
            assert await _missing(store, key, database=db), f"{key} was returned after its expiry"
        assert await store.list(database=db) == ["kept", "long"]
        assert [r.key for r in await store.read("", prefix=True, database=db)] == ["kept", "long"]
        assert [r.key for r in await store.read("y", suffix=True, database=db)] == []
        assert await store.list(prefix="ttl", database=db) == []
        [record] = await store.read("kept", database=db)
        assert record.value == b"5" and record.expiry is None, record
        # An expired key can be written again.
        await store.write(Record("ttl", b"again"), database=db)
        assert (await store.read("ttl", database=db))[0].value == b"again"


async def check_large_values(factory: StoreFactory) -> None:
    """A value of the configured maximum (1 MiB by default) round-trips, alone and in lists."""
    db = unique_database("large")
    async with factory() as store:
        size = store.options.max_value_size
        big = os.urandom(size)
        meta = {"blob": "x" * (store.options.max_metadata_size - 100)}
        await store.write(Record("big", big, meta), database=db)
        await store.write(Record("big2", big[::-1]), database=db)
        [record] = await store.read("big", database=db)
        assert record.value == big and record.metadata == meta, len(record.value)
        records = await store.read("big", prefix=True, database=db)
        assert [r.value for r in records] == [big, big[::-1]]


TEXT = 'Zürich 東京 🚀 "q" \\ \x00'


def _utf8(key: str) -> bytes:
    return key.encode("utf-8", "surrogatepass")


async def check_unicode_and_binary_keys(factory: StoreFactory) -> None:
    """Keys with any code point (control characters, NUL, lone surrogates) round-trip,
    are listed in code point order, and match prefixes and suffixes; values are any bytes."""
    db = unique_database("keys")
    value = bytes(range(256)) * 3
    async with factory() as store:
        for i, key in enumerate(ODD_KEYS):
            meta = {"i": i, "text": 'Zürich 東京 🚀 "q" \\'}
            await store.write(
                Record(key, value + key.encode("utf-8", "surrogatepass"), meta), database=db
            )
        assert await store.list(database=db) == sorted(ODD_KEYS)
        for i, key in enumerate(ODD_KEYS):
            [record] = await store.read(key, database=db)
            assert record.key == key, (record.key, key)
            assert record.value == value + key.encode("utf-8", "surrogatepass"), key
            assert record.metadata == {"i": i, "text": 'Zürich 東京 🚀 "q" \\'}, record.metadata
        assert await store.list(prefix="nul\x00", database=db) == ["nul\x00inside"]
        assert await store.list(suffix="\x00inside", database=db) == ["nul\x00inside"]
        assert await store.list(prefix="\ud800", database=db) == ["\ud800 lone surrogate"]
        assert [r.key for r in await store.read("\U0010ffff", prefix=True, database=db)] == [
            "\U0010ffff last code point"
        ]
        await store.delete("nul\x00inside", database=db)
        assert await _missing(store, "nul\x00inside", database=db)
        assert await store.list(prefix="nul", database=db) == []


async def check_pagination(factory: StoreFactory, *, keys: int = PAGINATION_KEYS) -> None:
    """Paging through ``keys`` keys with limit and offset sees each once, in order."""
    db = unique_database("pages")
    names = [f"key-{n:05d}" for n in range(keys)]
    async with factory() as store:
        await _write_many(store, names, db)
        seen: list[str] = []
        page_size = 1000
        while True:
            page = await store.list(limit=page_size, offset=len(seen), database=db)
            seen.extend(page)
            if len(page) < page_size:
                break
        assert seen == names, f"{len(seen)} keys paged, {len(set(seen))} distinct"
        tail = await store.read("key-0", prefix=True, limit=10, offset=995, database=db)
        assert [r.key for r in tail] == names[995:1005]
        assert (
            await store.list(suffix="7", limit=3, offset=100, database=db)
            == [n for n in names if n.endswith("7")][100:103]
        )


async def _raises(kind: type[E], call: Awaitable[Any], what: str) -> E:
    try:
        await call
    except kind as exc:
        return exc
    raise AssertionError(f"{what} must raise {kind.__name__}")


async def check_bad_input(factory: StoreFactory) -> None:
    """Bad keys, values, metadata and options raise clear errors and write nothing."""
    db = unique_database("bad")
    async with factory() as store:
        limits = store.options
        await store.write(Record("k", b"old"), database=db)
        too_long = "k" * (limits.max_key_size + 1)
        wide = "é" * (limits.max_key_size // 2 + 1)  # few characters, too many bytes
        for key in ("", too_long, wide):
            await _raises(
                InvalidKey, store.write(Record(key, b"v"), database=db), f"key {key[:5]!r}"
            )
            await _raises(InvalidKey, store.read(key, database=db), f"read of {key[:5]!r}")
            await _raises(InvalidKey, store.delete(key, database=db), f"delete of {key[:5]!r}")
        await _raises(InvalidKey, store.write(Record(1, b"v"), database=db), "an int key")  # type: ignore[arg-type]
        error = await _raises(
            ValueTooLarge,
            store.write(Record("k", b"x" * (limits.max_value_size + 1)), database=db),
            "a value over the limit",
        )
        assert str(limits.max_value_size) in error.detail, error
        await _raises(
            ValueTooLarge,
            store.write(Record("k", b"v", {"m": "x" * limits.max_metadata_size}), database=db),
            "metadata over the limit",
        )
        bad_writes: list[tuple[Record, dict[str, Any], str]] = [
            (Record("k", "text"), {}, "a str value"),  # type: ignore[arg-type]
            (Record("k", b"v", {"x": object()}), {}, "metadata that is not JSON"),
            (Record("k", b"v"), {"ttl": 0}, "a zero ttl"),
            (Record("k", b"v"), {"ttl": -1}, "a negative ttl"),
            (Record("k", b"v"), {"ttl": float("nan")}, "a NaN ttl"),
            (Record("k", b"v"), {"ttl": 5, "expiry": time.time() + 5}, "both ttl and expiry"),
            (Record("k", b"v"), {"expiry": time.time() - 1}, "an expiry in the past"),
            (Record("k", b"v"), {"table": ""}, "an empty table name"),
        ]
        for record, options, what in bad_writes:
            await _raises(BadRequest, store.write(record, database=db, **options), what)
        await _raises(BadRequest, store.list(offset=-1, database=db), "a negative offset")
        await _raises(BadRequest, store.list(limit=-1, database=db), "a negative limit")
        await _raises(BadRequest, store.read("k", prefix=True, offset=-1, database=db), "offset")
        # Nothing was written: the one good record is as it was.
        assert await store.list(database=db) == ["k"]
        assert await store.read("k", database=db) == [Record("k", b"old")]


async def check_closed_store(factory: StoreFactory) -> None:
    """A store not yet open, or closed by its last user, raises StoreUnavailable;
    one still entered by another user stays open."""
    db = unique_database("closed")
    store = factory()
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.read("k", database=db),
        lambda: store.read("k", prefix=True, database=db),
        lambda: store.write(Record("k", b"v"), database=db),
        lambda: store.delete("k", database=db),
        lambda: store.list(database=db),
    ]
    for call in calls:
        await _raises(StoreUnavailable, call(), "a call on a store not yet open")
    async with store:
        async with store:
            await store.write(Record("k", b"v"), database=db)
        assert await store.list(database=db) == ["k"], "the outer user still has it open"
    for call in calls:
        error = await _raises(StoreUnavailable, call(), "a call on a closed store")
        assert error.detail, error
    async with store:  # and it opens again
        assert await store.list(database=db) in (["k"], []), "reopened"


@dataclass
class Profile:
    name: str
    age: int
    tags: list[str]


async def check_typed_values(factory: StoreFactory) -> None:
    """Table.put/get store codec-encodable values and decode them into the asked type."""
    db = unique_database("typed")
    async with factory() as store:
        profiles = Table(store, "profiles", database=db)
        alice = Profile("Alice", 30, ["admin"])
        await profiles.put("alice", alice, metadata={"owner": "tests"})
        assert await profiles.get("alice", Profile) == alice
        [record] = await profiles.read("alice")
        assert record.metadata["owner"] == "tests" and "content-type" in record.metadata
        assert await profiles.get("nobody", Profile, default=None) is None
        await _raises(RecordNotFound, profiles.get("nobody", Profile), "get of a missing key")
        await _raises(BadRequest, profiles.get("alice", int), "decoding into the wrong type")
        packed = Table(store, "packed", database=db, codec="msgpack")
        await packed.put("numbers", {"n": [1, 2, 3], "text": "ünï"}, ttl=60)
        json_view = Table(store, "packed", database=db)  # decodes by the stored content type
        assert await json_view.get("numbers", dict[str, Any]) == {"n": [1, 2, 3], "text": "ünï"}
        await profiles.put("bob", Profile("Bob", 40, []))
        assert await profiles.items(Profile) == [("alice", alice), ("bob", Profile("Bob", 40, []))]


async def check_concurrent_writes(factory: StoreFactory) -> None:
    """Many writes and deletes in flight at once all take effect."""
    db = unique_database("concurrent")
    names = [f"c{n:04d}" for n in range(500)]
    async with factory() as store:
        await _write_many(store, names, db, value=b"first")
        async with anyio.create_task_group() as tg:
            for name in names[::2]:
                tg.start_soon(_delete, store, name, db)
            for name in names[1::2]:
                tg.start_soon(_write, store, Record(name, b"second"), db)
        assert await store.list(database=db) == names[1::2]
        records = await store.read("c", prefix=True, database=db)
        assert {r.value for r in records} == {b"second"}, {r.value for r in records}


STORE_CHECKS: dict[str, Callable[[StoreFactory], Awaitable[None]]] = {
    "write_read_delete": check_write_read_delete,
    "read_prefix_and_suffix": check_read_prefix_and_suffix,
    "list_options": check_list_options,
    "namespaces": check_namespaces,
    "ttl_expiry": check_ttl_expiry,
    "large_values": check_large_values,
    "unicode_and_binary_keys": check_unicode_and_binary_keys,
    "pagination": check_pagination,
    "bad_input": check_bad_input,
    "closed_store": check_closed_store,
    "typed_values": check_typed_values,
    "concurrent_writes": check_concurrent_writes,
}


async def check_store(factory: StoreFactory) -> None:
    """Run every check against stores made by ``factory``; raises AssertionError."""
    for check in STORE_CHECKS.values():
        await check(factory)
