"""Rule priority and wildcards decided by real services: a table of rules x calls.

Four services share one rule set; each row calls one endpoint as one account
(or with no token) over gRPC and expects it through, 401 or 403.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

import micro
from micro.auth import Access, Account, Auth, KeySet, Resource, Rule
from micro.auth.tokens import issue
from micro.registry import MemoryRegistry

pytestmark = pytest.mark.anyio

KEYS = KeySet.generate()

RULES = [
    Rule("public-health", "", Resource("service", "*", "Health.*"), priority=100),
    Rule("admins", "admin", Resource("*", "*", "*"), priority=50),
    Rule("no-delete", "*", Resource("service", "store", "Store.Delete"), Access.DENY, 40),
    Rule("readers", "read", Resource("service", "store", "Store.Read*"), priority=10),
    Rule("all-store", "*", Resource("service", "store", "*"), priority=0),
    Rule("users-prefix", "*", Resource("service", "user*", "Users.Get"), priority=0),
    Rule("tie-deny", "*", Resource("service", "tie", "*"), Access.DENY, 5),
    Rule("tie-grant", "*", Resource("service", "tie", "*"), Access.GRANT, 5),
]

ANY = Account("any")
ADMIN = Account("root", scopes=("admin",))
READER = Account("reader", scopes=("read",))
OK, E401, E403 = 200, 401, 403

TABLE: list[tuple[Account | None, str, str, int]] = [
    (None, "other", "Health.Check", OK),
    (ANY, "store", "Health.Check", OK),
    (None, "store", "Store.Read", E401),
    (ANY, "store", "Store.Read", OK),
    (ANY, "store", "Store.Delete", E403),
    (ADMIN, "store", "Store.Delete", OK),
    (READER, "store", "Store.ReadMany", OK),
    (READER, "store", "Store.Delete", E403),
    (ANY, "users", "Users.Get", OK),
    (ANY, "users", "Users.Put", E403),
    (None, "users", "Users.Get", E401),
    (ANY, "tie", "Tie.Call", E403),
    (ADMIN, "tie", "Tie.Call", OK),
    (ANY, "other", "Other.Call", E403),
    (None, "other", "Other.Call", E401),
    (ADMIN, "other", "Other.Call", OK),
]


class Health:
    async def check(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}


class Store:
    async def read(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def read_many(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def delete(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}


class Users:
    async def get(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def put(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}


class Tie:
    async def call(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}


class Other:
    async def call(self, req: dict[str, Any]) -> dict[str, Any]:
        return {}


HANDLERS: dict[str, list[object]] = {
    "store": [Store(), Health()],
    "users": [Users(), Health()],
    "tie": [Tie(), Health()],
    "other": [Other(), Health()],
}


async def test_the_rule_table() -> None:
    registry = MemoryRegistry()
    services = []
    for name, handlers in HANDLERS.items():
        service = micro.Service(
            name, address="127.0.0.1:0", registry=registry, auth=Auth(KEYS, rules=RULES)
        )
        for handler in handlers:
            service.handle(handler)
        services.append(service)
    got: list[tuple[str | None, str, str, int]] = []
    async with contextlib.AsyncExitStack() as stack:
        for service in services:
            await stack.enter_async_context(service.running())
        client = await stack.enter_async_context(micro.Client(registry=registry, retries=0))
        for account, name, endpoint, _ in TABLE:
            md = {}
            if account is not None:
                token = issue(KEYS, account, issuer="micro", ttl=60)
                md = {"authorization": f"Bearer {token}"}
            try:
                await client.call(name, endpoint, {}, metadata=md)
                code = OK
            except micro.MicroError as exc:
                code = exc.code
            got.append((None if account is None else account.id, name, endpoint, code))
    expected = [(a if a is None else a.id, n, e, c) for a, n, e, c in TABLE]
    assert got == expected
