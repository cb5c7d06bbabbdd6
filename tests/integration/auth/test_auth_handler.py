"""The Auth API over the network: tokens for credentials, management for admins only."""

from __future__ import annotations

from typing import Any

import pytest

import micro
from micro.auth import (
    AUTH_HANDLER_NAME,
    AUTH_SERVICE_RULES,
    DEFAULT_RULES,
    Account,
    Auth,
    AuthHandler,
    KeySet,
)
from micro.auth.handler import (
    AccountsResponse,
    GenerateRequest,
    GenerateResponse,
    RefreshRequest,
    RuleInfo,
    RulesResponse,
    TokenRequest,
    TokenResponse,
)
from micro.auth.tokens import issue
from micro.registry import MemoryRegistry
from micro.store import MemoryStore

pytestmark = pytest.mark.anyio

KEYS = KeySet.generate()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_tokens_and_management_over_the_network() -> None:
    registry = MemoryRegistry()
    auth = Auth(KEYS, rules=[*DEFAULT_RULES, *AUTH_SERVICE_RULES])
    service = micro.Service(
        "auth", address="127.0.0.1:0", registry=registry, auth=auth, store=MemoryStore()
    )
    service.handle(AuthHandler(auth), name=AUTH_HANDLER_NAME)
    admin = issue(KEYS, Account("root", scopes=("admin",)), issuer="micro", ttl=60)
    user = issue(KEYS, Account("someone"), issuer="micro", ttl=60)
    async with service.running(), micro.Client(registry=registry, retries=0) as client:

        async def call(endpoint: str, req: Any, resp: Any, token: str | None = None) -> Any:
            md = bearer(token) if token else {}
            return await client.call("auth", f"micro.Auth.{endpoint}", req, resp, metadata=md)

        # Only admins manage accounts and rules, even though any account may call anything.
        with pytest.raises(micro.Unauthorized):
            await call("Generate", GenerateRequest("alice"), GenerateResponse)
        with pytest.raises(micro.Forbidden):
            await call("Generate", GenerateRequest("alice"), GenerateResponse, user)
        made = await call(
            "Generate", GenerateRequest("alice", scopes=["greet"]), GenerateResponse, admin
        )
        assert made.account.id == "alice" and made.account.scopes == ["greet"]
        # Anyone with credentials gets tokens, without a token.
        tokens = await call("Token", TokenRequest("alice", made.secret), TokenResponse)
        assert auth.inspect(tokens.access_token).id == "alice"
        with pytest.raises(micro.Unauthorized):
            await call("Token", TokenRequest("alice", "wrong"), TokenResponse)
        again = await call("Refresh", RefreshRequest(tokens.refresh_token), TokenResponse)
        assert auth.inspect(again.access_token).scopes == ("greet",)
        listed = await call("Accounts", {}, AccountsResponse, admin)
        assert [a.id for a in listed.accounts] == ["alice"]
        # Rules.
        await call("Grant", RuleInfo("r1", "greet", endpoint="Greeter.*"), dict, admin)
        rules = await call("Rules", {}, RulesResponse, admin)
        assert "r1" in [r.id for r in rules.rules]
        with pytest.raises(micro.BadRequest):
            await call("Grant", RuleInfo("r2", "x", access="maybe"), dict, admin)
        with pytest.raises(micro.Forbidden):
            await call("Revoke", {"id": "r1"}, dict, tokens.access_token)
        await call("Revoke", {"id": "r1"}, dict, admin)
        with pytest.raises(micro.NotFound):
            await call("Revoke", {"id": "r1"}, dict, admin)
        await call("Delete", {"id": "alice"}, dict, admin)
        with pytest.raises(micro.Unauthorized):
            await call("Refresh", RefreshRequest(tokens.refresh_token), TokenResponse)
