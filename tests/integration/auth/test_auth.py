"""Auth on real services: every entry point checked, bad tokens refused, identities carried.

Each test runs a service with ``auth=Auth(...)`` on 127.0.0.1 and calls it the
ways a peer can: plain HTTP/1.1 (httpx), plain HTTP/2 and gRPC (micro's
client), streaming calls of every kind, and the HTTP broker's delivery
endpoint.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest

import micro
from micro.auth import Access, Account, Auth, KeySet, Resource, Rule
from micro.auth.tokens import issue
from micro.broker.base import PublishError
from micro.broker.http import DELIVER_CONTENT_TYPE, DELIVER_ENDPOINT, Delivery
from micro.registry import MemoryRegistry
from micro.store import MemoryStore

pytestmark = pytest.mark.anyio

KEYS = KeySet.generate()
OTHER_KEYS = KeySet.generate()

RULES = [
    Rule("greeters", "greet", Resource("service", "greeter", "*")),
    Rule("services", "service", Resource("service", "*", "*")),
    Rule("public", "", Resource("service", "greeter", "Greeter.Public"), priority=10),
]

ALICE = Account("alice", scopes=("greet",))
EVE = Account("eve", scopes=("other",))


@dataclass
class Num:
    value: int


class Greeter:
    async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        who = micro.context.account()
        return {
            "account": None if who is None else who.id,
            "type": None if who is None else who.type.value,
            "metadata": dict(micro.context.metadata()),
        }

    async def public(self, req: dict[str, Any]) -> dict[str, Any]:
        who = micro.context.account()
        return {"account": None if who is None else who.id}

    async def count(self, req: Num) -> AsyncIterator[Num]:
        for i in range(req.value):
            yield Num(i)

    async def total(self, reqs: AsyncIterator[Num]) -> Num:
        return Num(sum([r.value async for r in reqs]))

    async def double(self, reqs: AsyncIterator[Num]) -> AsyncIterator[Num]:
        async for r in reqs:
            yield Num(r.value * 2)


def bearer(account: Account, keys: KeySet = KEYS, **kwargs: Any) -> dict[str, str]:
    kwargs.setdefault("ttl", 60)
    return {"authorization": "Bearer " + issue(keys, account, issuer="micro", **kwargs)}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def bad_tokens() -> dict[str, str]:
    good = issue(KEYS, ALICE, issuer="micro", ttl=60)
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scopes"] = ["greet", "admin"]
    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": KEYS.kid}).encode())
    return {
        "expired": issue(KEYS, ALICE, issuer="micro", ttl=60, now=time.time() - 3600),
        "other key": issue(OTHER_KEYS, ALICE, issuer="micro", ttl=60),
        "alg none": f"{none_header}.{payload}.",
        "tampered payload": f"{header}.{_b64(json.dumps(claims).encode())}.{signature}",
        "truncated": good[:-10],
        "not bearer": "",
    }


@pytest.fixture
def registry() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
async def greeter(registry: MemoryRegistry) -> AsyncIterator[micro.Service]:
    service = micro.Service(
        "greeter",
        address="127.0.0.1:0",
        registry=registry,
        auth=Auth(KEYS, rules=RULES),
        store=MemoryStore(),
        grace_period=2,
    )
    service.handle(Greeter())
    async with service.running():
        yield service


@pytest.fixture
async def client(registry: MemoryRegistry) -> AsyncIterator[micro.Client]:
    async with micro.Client(registry=registry, retries=0) as c:
        yield c


async def http1(service: micro.Service, endpoint: str, headers: dict[str, str]) -> httpx.Response:
    path = "/" + endpoint.replace(".", "/")
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.post(f"http://{service.address}{path}", json={}, headers=headers)


async def call(
    client: micro.Client, service: micro.Service, protocol: str, headers: dict[str, str]
) -> Any:
    content_type = "application/grpc+json" if protocol == "grpc" else "application/json"
    return await client.call(
        "greeter",
        "Greeter.Hello",
        {},
        address=service.address,
        metadata=headers,
        content_type=content_type,
    )


# -- 401 and 403 on every protocol ----------------------------------------------


async def test_no_token_is_401_over_http1(greeter: micro.Service) -> None:
    response = await http1(greeter, "Greeter.Hello", {})
    assert response.status_code == 401
    assert response.json()["code"] == 401


@pytest.mark.parametrize("protocol", ["grpc", "http2"])
async def test_no_token_is_unauthenticated(
    greeter: micro.Service, client: micro.Client, protocol: str
) -> None:
    with pytest.raises(micro.Unauthorized) as info:
        await call(client, greeter, protocol, {})
    assert info.value.code == 401
    if protocol == "grpc":
        assert info.value.grpc_status == 16  # UNAUTHENTICATED


async def test_unknown_endpoints_are_only_named_to_callers_allowed_to_call(
    greeter: micro.Service,
) -> None:
    # Without a token, an unknown endpoint looks like any other: 401, not 404.
    response = await http1(greeter, "Greeter.Nope", {})
    assert response.status_code == 401
    response = await http1(greeter, "Greeter.Nope", bearer(EVE))
    assert response.status_code == 403
    # A caller the rules let in learns that it does not exist.
    response = await http1(greeter, "Greeter.Nope", bearer(ALICE))
    assert response.status_code == 404


async def test_a_token_without_a_grant_is_403_over_http1(greeter: micro.Service) -> None:
    response = await http1(greeter, "Greeter.Hello", bearer(EVE))
    assert response.status_code == 403
    assert "eve" in response.json()["detail"]


@pytest.mark.parametrize("protocol", ["grpc", "http2"])
async def test_a_token_without_a_grant_is_permission_denied(
    greeter: micro.Service, client: micro.Client, protocol: str
) -> None:
    with pytest.raises(micro.Forbidden) as info:
        await call(client, greeter, protocol, bearer(EVE))
    assert info.value.code == 403
    if protocol == "grpc":
        assert info.value.grpc_status == 7  # PERMISSION_DENIED


@pytest.mark.parametrize("protocol", ["grpc", "http2"])
async def test_a_granted_token_reaches_the_handler_with_its_account(
    greeter: micro.Service, client: micro.Client, protocol: str
) -> None:
    result = await call(client, greeter, protocol, {**bearer(ALICE), "x-trace": "1"})
    # The handler sees who called; the token itself stays out of its metadata.
    assert result == {"account": "alice", "type": "user", "metadata": {"x-trace": "1"}}
    response = await http1(greeter, "Greeter.Hello", bearer(ALICE))
    assert response.status_code == 200
    assert response.json()["account"] == "alice"


CASES = ["expired", "other key", "alg none", "tampered payload", "truncated", "not bearer"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("protocol", ["http1", "http2", "grpc"])
async def test_bad_tokens_are_401_never_accepted(
    greeter: micro.Service, client: micro.Client, case: str, protocol: str
) -> None:
    token = bad_tokens()[case]
    headers = {"authorization": token if case == "not bearer" else f"Bearer {token}"}
    if case == "not bearer":
        headers = {"authorization": "Basic YWxpY2U6c2VjcmV0"}
    if protocol == "http1":
        response = await http1(greeter, "Greeter.Hello", headers)
        assert response.status_code == 401
        assert token[:40] not in response.text or not token
        # ...and not even on an endpoint that needs no token at all.
        response = await http1(greeter, "Greeter.Public", headers)
        assert response.status_code == 401
        return
    with pytest.raises(micro.Unauthorized) as info:
        await call(client, greeter, protocol, headers)
    if protocol == "grpc":
        assert info.value.grpc_status == 16


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
async def test_requests_are_checked_before_they_are_decoded(
    greeter: micro.Service, body: bytes
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        url = f"http://{greeter.address}/Greeter/Hello"
        headers = {"content-type": "application/json"}
        response = await http.post(url, content=body, headers=headers)
        assert response.status_code == 401
        response = await http.post(url, content=body, headers={**headers, **bearer(ALICE)})
        assert response.status_code == 400


async def test_server_auth_also_works_as_plain_middleware(
    registry: MemoryRegistry, client: micro.Client
) -> None:
    from micro.auth import ServerAuth

    auth = Auth(KEYS, rules=RULES)
    service = micro.Service(
        "greeter",
        address="127.0.0.1:0",
        registry=registry,
        middleware=[ServerAuth(auth, "greeter")],
    )
    service.handle(Greeter())
    async with service.running():
        with pytest.raises(micro.Unauthorized):
            await call(client, service, "grpc", {})
        with pytest.raises(micro.Forbidden):
            await call(client, service, "grpc", bearer(EVE))
        result = await call(client, service, "grpc", {**bearer(ALICE), "x-trace": "1"})
    assert result == {"account": "alice", "type": "user", "metadata": {"x-trace": "1"}}


async def test_public_endpoints_need_no_token(greeter: micro.Service) -> None:
    response = await http1(greeter, "Greeter.Public", {})
    assert response.status_code == 200
    assert response.json() == {"account": None}


async def test_health_is_not_checked(greeter: micro.Service, client: micro.Client) -> None:
    status = await client.call(
        "greeter",
        "grpc.health.v1.Health.Check",
        b"",
        bytes,
        address=greeter.address,
        content_type="application/grpc",
    )
    assert status == b"\x08\x01"  # SERVING


async def test_bad_calls_do_not_disturb_good_ones_on_the_same_connection(
    greeter: micro.Service, client: micro.Client
) -> None:
    results: list[str] = []

    async def good() -> None:
        result = await call(client, greeter, "grpc", bearer(ALICE))
        results.append(result["account"])

    async def bad() -> None:
        with pytest.raises(micro.Unauthorized):
            await call(client, greeter, "grpc", {"authorization": "Bearer x.y.z"})

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(good)
            tg.start_soon(bad)
    assert results == ["alice"] * 10


@pytest.mark.parametrize("http2", [False, True])
async def test_get_routes_are_checked_but_health(greeter: micro.Service, http2: bool) -> None:
    async with httpx.AsyncClient(http1=not http2, http2=http2, timeout=10) as http:

        async def get(path: str, headers: dict[str, str]) -> httpx.Response:
            response = await http.get(f"http://{greeter.address}{path}", headers=headers)
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            return response

        for path in ("/health", "/health/ready"):
            assert (await get(path, {})).status_code == 200
        for path in ("/metrics", "/debug/stats"):
            response = await get(path, {})
            assert response.status_code == 401
            assert response.json()["detail"] == f"{path} needs a token"
            assert (await get(path, bearer(EVE))).status_code == 403
            forged = {"authorization": "Bearer " + bad_tokens()["tampered payload"]}
            assert (await get(path, forged)).status_code == 401
            assert (await get(path, bearer(ALICE))).status_code == 200


# -- streaming -------------------------------------------------------------------


async def _server_stream(client: micro.Client, service: micro.Service, md: dict[str, str]) -> Any:
    async with client.stream(
        "greeter", "Greeter.Count", Num(3), Num, address=service.address, metadata=md
    ) as s:
        return [n.value async for n in s]


async def _client_stream(client: micro.Client, service: micro.Service, md: dict[str, str]) -> Any:
    async with client.stream(
        "greeter", "Greeter.Total", response_type=Num, address=service.address, metadata=md
    ) as s:
        for i in range(3):
            await s.send(Num(i))
        await s.close_send()
        return (await s.receive()).value


async def _bidi(client: micro.Client, service: micro.Service, md: dict[str, str]) -> Any:
    async with client.stream(
        "greeter", "Greeter.Double", response_type=Num, address=service.address, metadata=md
    ) as s:
        await s.send(Num(21))
        value = (await s.receive()).value
        await s.close_send()
        return value


STREAMS = {
    "server": (_server_stream, [0, 1, 2]),
    "client": (_client_stream, 3),
    "bidi": (_bidi, 42),
}


@pytest.mark.parametrize("kind", list(STREAMS))
async def test_streams_are_checked(greeter: micro.Service, client: micro.Client, kind: str) -> None:
    run, expected = STREAMS[kind]
    assert await run(client, greeter, bearer(ALICE)) == expected
    with pytest.raises(micro.Unauthorized) as no_token:
        await run(client, greeter, {})
    assert no_token.value.grpc_status == 16
    with pytest.raises(micro.Forbidden) as no_grant:
        await run(client, greeter, bearer(EVE))
    assert no_grant.value.grpc_status == 7
    with pytest.raises(micro.Unauthorized):
        await run(client, greeter, bearer(ALICE, OTHER_KEYS))


# -- identities between services ------------------------------------------------------


class Front:
    def __init__(self, client: micro.Client) -> None:
        self.client = client

    async def relay(self, req: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.client.call("greeter", "Greeter.Hello", {}))


async def test_a_service_calls_as_itself(registry: MemoryRegistry, greeter: micro.Service) -> None:
    front = micro.Service(
        "front", address="127.0.0.1:0", registry=registry, auth=Auth(KEYS, rules=RULES)
    )
    front.handle(Front(front.client))
    assert front.identity is not None and front.identity.id == "front"
    async with front.running(), micro.Client(registry=registry) as client:
        # alice may call greeter but not front; front may call greeter as itself.
        with pytest.raises(micro.Forbidden):
            await client.call("front", "Front.Relay", {}, metadata=bearer(ALICE))
        service_caller = Account("ops", micro.auth.AccountType.SERVICE, ("service",))
        result = await client.call("front", "Front.Relay", {}, metadata=bearer(service_caller))
    # greeter saw front's own identity, not the caller's token passed on.
    assert result["account"] == "front"
    assert result["type"] == "service"
    assert "authorization" not in result["metadata"]


async def test_rules_granted_at_runtime_apply(greeter: micro.Service, client: micro.Client) -> None:
    assert greeter.auth is not None
    with pytest.raises(micro.Forbidden):
        await call(client, greeter, "grpc", bearer(EVE))
    await greeter.auth.grant(Rule("eve", "other", Resource("service", "greeter", "Greeter.*")))
    assert (await call(client, greeter, "grpc", bearer(EVE)))["account"] == "eve"
    await greeter.auth.grant(
        Rule("no-eve", "other", Resource("service", "greeter", "*"), Access.DENY, priority=100)
    )
    with pytest.raises(micro.Forbidden):
        await call(client, greeter, "grpc", bearer(EVE))
    await greeter.auth.revoke("no-eve")
    assert (await call(client, greeter, "grpc", bearer(EVE)))["account"] == "eve"


# -- the HTTP broker -------------------------------------------------------------------


async def test_broker_delivery_requires_auth(registry: MemoryRegistry) -> None:
    got: list[dict[str, Any]] = []
    received = anyio.Event()
    subscriber = micro.Service(
        "sub", address="127.0.0.1:0", registry=registry, auth=Auth(KEYS, rules=RULES)
    )

    @subscriber.subscriber("events")
    async def on_event(event: dict[str, Any]) -> None:
        got.append(event)
        received.set()

    publisher = micro.Service(
        "pub", address="127.0.0.1:0", registry=registry, auth=Auth(KEYS, rules=RULES)
    )
    outsider = micro.Service("outsider", address="127.0.0.1:0", registry=registry)
    async with subscriber.running(), publisher.running(), outsider.running():
        # A publisher with an identity delivers.
        await publisher.publish("events", {"n": 1})
        with anyio.fail_after(10):
            await received.wait()
        assert got == [{"n": 1}]
        # One without cannot.
        with pytest.raises(PublishError, match=r"needs a token"):
            await outsider.publish("events", {"n": 2})
        # Nor can anyone calling the delivery endpoint directly without a token.
        async with micro.Client(registry=registry) as client:
            with pytest.raises(micro.Unauthorized):
                await client.call(
                    "sub",
                    DELIVER_ENDPOINT,
                    Delivery("any", "events", "1", b"{}"),
                    address=subscriber.address,
                    content_type=DELIVER_CONTENT_TYPE,
                )
    assert got == [{"n": 1}]


# -- logs ------------------------------------------------------------------------------


async def test_tokens_never_reach_the_logs(
    greeter: micro.Service, client: micro.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = bearer(ALICE)
    await call(client, greeter, "grpc", good)
    bad = {"authorization": "Bearer " + bad_tokens()["tampered payload"]}
    with pytest.raises(micro.Unauthorized) as info:
        await call(client, greeter, "grpc", bad)
    for headers in (good, bad):
        token = headers["authorization"].split()[1]
        assert token not in caplog.text
        assert token not in str(info.value)
