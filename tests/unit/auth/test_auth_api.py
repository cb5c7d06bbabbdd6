"""The Auth API: accounts, secrets, token exchange and refresh, rules kept in a store."""

from __future__ import annotations

import hmac
import logging
import time

import pytest

import micro
from micro.auth import (
    Access,
    Account,
    AccountType,
    Auth,
    ClientAuth,
    Credentials,
    InvalidToken,
    KeySet,
    Resource,
    Rule,
    check_secret,
    hash_secret,
)
from micro.store import MemoryStore

pytestmark = pytest.mark.anyio

KEYS = KeySet.generate()


async def test_generate_login_and_inspect() -> None:
    async with Auth(KEYS) as auth:
        account, secret = await auth.generate("alice", scopes=["read"], metadata={"team": "a"})
        assert account == Account("alice", AccountType.USER, ("read",), {"team": "a"})
        assert len(secret) >= 32
        token = await auth.token("alice", secret)
        assert auth.inspect(token.access_token) == account
        assert [a.id for a in await auth.list_accounts()] == ["alice"]
        with pytest.raises(micro.Conflict):
            await auth.generate("alice")
        with pytest.raises(micro.BadRequest):
            await auth.generate("")
        with pytest.raises(micro.BadRequest, match="user or service"):
            await auth.generate("bob", type="robot")


async def test_wrong_secret_and_unknown_account_get_the_same_answer() -> None:
    async with Auth(KEYS) as auth:
        _, secret = await auth.generate("alice")
        with pytest.raises(micro.Unauthorized) as wrong:
            await auth.token("alice", secret + "x")
        with pytest.raises(micro.Unauthorized) as unknown:
            await auth.token("nobody", secret)
        assert wrong.value.detail == unknown.value.detail


async def test_secrets_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("micro.auth.accounts.hmac.compare_digest", spy)
    async with Auth(KEYS) as auth:
        _, secret = await auth.generate("alice")
        await auth.token("alice", secret)
        with pytest.raises(micro.Unauthorized):
            await auth.token("alice", "wrong")
    assert len(calls) == 2


def test_secrets_are_stored_hashed_with_a_salt() -> None:
    one, two = hash_secret("s3cret"), hash_secret("s3cret")
    assert one != two and "s3cret" not in one
    assert check_secret("s3cret", one) and check_secret("s3cret", two)
    assert not check_secret("s3cret!", one)
    assert not check_secret("s3cret", "not a hash")


async def test_secrets_and_tokens_are_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with Auth(KEYS) as auth:
        _, secret = await auth.generate("alice", secret="correct horse battery staple")
        token = await auth.token("alice", secret)
        with pytest.raises(micro.Unauthorized) as info:
            await auth.token("alice", "wrong horse")
        refreshed = await auth.refresh(token.refresh_token)
        with pytest.raises(InvalidToken):
            auth.inspect(token.access_token[:-3])
        client = ClientAuth(auth, credentials=Credentials("alice", secret))
        await client.token()
        stored = await auth.store.read("account/alice", database="micro", table="auth")
    assert secret.encode() not in stored[0].value
    text = caplog.text + repr(client) + repr(Credentials("alice", secret)) + str(info.value)
    for value in (secret, "wrong horse", token.access_token, refreshed.refresh_token):
        assert value not in text


async def test_refresh_gives_a_new_pair_and_needs_the_account() -> None:
    async with Auth(KEYS) as auth:
        _, secret = await auth.generate("alice")
        token = await auth.token("alice", secret)
        again = await auth.refresh(token.refresh_token)
        assert auth.inspect(again.access_token).id == "alice"
        with pytest.raises(InvalidToken):
            await auth.refresh(token.access_token)  # an access token is not a refresh token
        with pytest.raises(InvalidToken):
            auth.inspect(token.refresh_token)  # nor the other way round
        await auth.delete_account("alice")
        with pytest.raises(micro.Unauthorized, match="no longer exists"):
            await auth.refresh(token.refresh_token)
        with pytest.raises(micro.NotFound):
            await auth.delete_account("alice")


async def test_client_auth_renews_before_expiry() -> None:
    async with Auth(KEYS, access_ttl=4) as auth:
        client = ClientAuth(auth, account=auth.service_account("svc"))
        first = await client.token()
        assert await client.token() is first
        # Three quarters into its life the token is renewed.
        object.__setattr__(first, "created", time.time() - 3.5)
        object.__setattr__(first, "expiry", time.time() + 0.5)
        second = await client.token()
        assert second is not first
        assert auth.inspect(second.access_token).type is AccountType.SERVICE

        _, secret = await auth.generate("bob")
        by_secret = ClientAuth(auth, credentials=Credentials("bob", secret))
        one = await by_secret.token()
        object.__setattr__(one, "created", time.time() - 3.5)
        object.__setattr__(one, "expiry", time.time() + 0.5)
        two = await by_secret.token()
        assert two is not one and auth.inspect(two.access_token).id == "bob"
        with pytest.raises(ValueError):
            ClientAuth(auth)


async def test_rules_are_kept_in_the_store_and_shared() -> None:
    store = MemoryStore()
    async with store:
        one = Auth(KEYS, store=store, rules=[])
        two = Auth(KEYS, store=store, rules=[])
        async with one, two:
            rule = Rule("r1", "admin", Resource("service", "x", "*"), Access.GRANT, 3)
            await one.grant(rule)
            assert one.rules() == [rule]
            assert two.rules() == []
            await two.load()
            assert two.rules() == [rule]
            await two.revoke("r1")
            await one.load()
            assert one.rules() == []
            with pytest.raises(micro.NotFound):
                await one.revoke("r1")
            with pytest.raises(micro.BadRequest):
                await one.grant(Rule("", "*"))


async def test_default_rules_admit_any_account_and_only_accounts() -> None:
    auth = Auth(KEYS)
    resource = Resource("service", "x", "X.Y")
    assert auth.decide(Account("a"), resource).name == "GRANTED"
    assert auth.decide(None, resource).name == "UNAUTHENTICATED"
    assert auth.excluded("grpc.health.v1.Health.Check")
    assert not auth.excluded("Greeter.Hello")
