"""The dashboard's JSON API: what the gateway shows of the registry, and to whom.

Without auth every caller sees every service. With auth (the gateway given an
:class:`~micro.auth.Auth`), every ``/api`` request but the sign-in needs a
valid bearer token, and the rules that guard calls decide what the account
sees: a service when it may call at least one of its endpoints, of a service
only the endpoints it may call, a topic when it sees one of its subscribers.
A service the account may not see answers 404, as one that does not exist.
Sign-in is throttled per account: after SIGN_IN_ATTEMPTS failures within
SIGN_IN_WINDOW seconds, the account's sign-ins are refused (429) until the
oldest of them is that old, whatever the secret, so a secret cannot be
guessed at the speed of the gateway.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio
import httpx

from ..auth import Account, Auth, Decision, InvalidToken, Resource, bearer_token
from ..broker.http import topic_service
from ..client.client import Client
from ..errors import BadRequest, Forbidden, MicroError, NotFound, TooManyRequests, Unauthorized
from ..registry.base import ServiceRecord
from .inspect import HEALTH_TIMEOUT, check_health, record_json
from .metrics import MetricsHistory, NodeReading, parse_node_metrics

__all__ = ["DashboardApi"]

_TOPIC_PREFIX = topic_service("")

#: failed sign-ins of one account within SIGN_IN_WINDOW after which its sign-ins wait
SIGN_IN_ATTEMPTS = 5
#: seconds over which failed sign-ins are counted
SIGN_IN_WINDOW = 60.0
#: accounts whose failures are remembered at most (the oldest are forgotten first)
_SIGN_IN_ACCOUNTS = 10_000


class DashboardApi:
    """Answers ``GET /api/...`` and ``POST /api/login`` for one gateway."""

    def __init__(self, client: Client, auth: Auth | None = None) -> None:
        self.client = client
        self.auth = auth
        self.history = MetricsHistory()
        self._rules_loaded = time.monotonic()
        #: per service, why nodes could not be read at the last reading
        self._failures: dict[str, dict[str, str]] = {}
        #: services whose nodes are being read now
        self._reading: dict[str, anyio.Event] = {}
        #: per account id, the times of its recent failed sign-ins (oldest first)
        self._failed_sign_ins: dict[str, deque[float]] = {}

    # -- who is asking -------------------------------------------------------------

    async def account(self, headers: list[tuple[str, str]]) -> Account | None:
        """The caller's account (None without auth); raises Unauthorized (401) with auth
        and no valid bearer token."""
        if self.auth is None:
            return None
        value = next((v for k, v in headers if k == "authorization"), None)
        if value is None:
            raise Unauthorized("sign in: this gateway needs a bearer token", id="micro.gateway")
        account = self.auth.inspect(bearer_token(value))
        if time.monotonic() - self._rules_loaded >= self.auth.refresh_interval:
            # Rules granted since are picked up as services pick them up.
            self._rules_loaded = time.monotonic()
            await self.auth.load()
        return account

    async def check_call(self, headers: list[tuple[str, str]], service: str, endpoint: str) -> None:
        """Raise Unauthorized (401) or Forbidden (403) unless the rules let the caller
        call ``endpoint`` of ``service`` (anyone, without auth)."""
        if self.auth is None or self.auth.excluded(endpoint):
            return
        signed = any(k == "authorization" for k, _ in headers)
        account = await self.account(headers) if signed else None
        decision = self.auth.decide(account, Resource("service", service, endpoint))
        if decision is Decision.UNAUTHENTICATED:
            raise Unauthorized(f"calling {service} {endpoint} needs a token", id="micro.gateway")
        if decision is Decision.FORBIDDEN:
            who = account.id if account is not None else "anonymous"
            raise Forbidden(f"{who} may not call {service} {endpoint}", id="micro.gateway")

    def may_call(self, account: Account | None, service: str, endpoint: str) -> bool:
        if self.auth is None:
            return True
        return self.auth.decide(account, Resource("service", service, endpoint)) is Decision.GRANTED

    def _visible(self, account: Account | None, record: ServiceRecord) -> ServiceRecord | None:
        """``record`` with only the endpoints ``account`` may call; None if it may call none."""
        if self.auth is None:
            return record
        endpoints = tuple(
            e for e in record.endpoints if self.may_call(account, record.name, e.name)
        )
        if endpoints or self.may_call(account, record.name, "*"):
            return ServiceRecord(
                record.name, record.version, record.metadata, endpoints, record.nodes
            )
        return None

    async def records(self, account: Account | None, name: str) -> list[ServiceRecord]:
        """The versions of ``name`` the account sees; NotFound if none."""
        records = [
            seen
            for r in await self.client.registry.get_service(name)
            if (seen := self._visible(account, r)) is not None
        ]
        if not records:
            raise NotFound(f"service {name} not found", id="micro.gateway")
        return sorted(records, key=lambda r: r.version)

    # -- sign-in -------------------------------------------------------------------

    async def login(self, body: bytes) -> dict[str, Any]:
        """Exchange ``{"id", "secret"}`` for tokens (the same 401 whatever was wrong)."""
        if self.auth is None:
            raise NotFound("this gateway has no auth: nothing to sign in to", id="micro.gateway")
        try:
            given = json.loads(body)
            account_id, secret = given["id"], given["secret"]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            shape = 'sign in with {"id": ..., "secret": ...}'
            raise BadRequest(shape, id="micro.gateway") from None
        if not isinstance(account_id, str) or not isinstance(secret, str):
            raise BadRequest("id and secret are strings", id="micro.gateway")
        now = time.monotonic()
        failed = self._failed_sign_ins.get(account_id)
        if failed is not None:
            while failed and now - failed[0] >= SIGN_IN_WINDOW:
                failed.popleft()
            if len(failed) >= SIGN_IN_ATTEMPTS:
                wait = max(1, round(SIGN_IN_WINDOW - (now - failed[0])))
                raise TooManyRequests(
                    f"too many failed sign-ins as {account_id}: try again in {wait} s",
                    id="micro.gateway",
                )
        try:
            token = await self.auth.token(account_id, secret)
        except Unauthorized:
            self._sign_in_failed(account_id, now)
            raise
        return {
            "account": account_id,
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "expiry": token.expiry,
        }

    def _sign_in_failed(self, account_id: str, now: float) -> None:
        failures = self._failed_sign_ins
        failed = failures.pop(account_id, None)  # back in as the newest
        if failed is None:
            failed = deque(maxlen=SIGN_IN_ATTEMPTS)
            while len(failures) >= _SIGN_IN_ACCOUNTS:
                del failures[next(iter(failures))]
        failed.append(now)
        failures[account_id] = failed

    async def refresh(self, body: bytes) -> dict[str, Any]:
        """Exchange ``{"refresh_token"}`` for a new token pair (401 if it is not good)."""
        if self.auth is None:
            raise NotFound("this gateway has no auth: nothing to refresh", id="micro.gateway")
        try:
            given = json.loads(body)["refresh_token"]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            shape = 'refresh with {"refresh_token": ...}'
            raise BadRequest(shape, id="micro.gateway") from None
        if not isinstance(given, str):
            raise BadRequest("refresh_token is a string", id="micro.gateway")
        token = await self.auth.refresh(given)
        return {
            "account": self.auth.inspect(token.access_token).id,
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "expiry": token.expiry,
        }

    # -- pages ---------------------------------------------------------------------

    async def get(self, parts: list[str], headers: list[tuple[str, str]]) -> Any:
        """The JSON of ``GET /api/<parts>``; raises NotFound for an unknown page."""
        if parts == ["auth"]:
            return await self._whoami(headers)
        account = await self.account(headers)
        metadata = _forwarded(headers)
        match parts:
            case ["services"]:
                return await self.services(account)
            case ["services", name]:
                return [record_json(r) for r in await self.records(account, name)]
            case ["services", name, "metrics"]:
                return await self.metrics(account, name, metadata)
            case ["health", name]:
                await self.records(account, name)
                return [
                    {
                        "node": h.node,
                        "address": h.address,
                        "version": h.version,
                        "status": h.status,
                        "detail": h.detail,
                        "stats": h.stats,
                    }
                    for h in await check_health(self.client, name, metadata=metadata)
                ]
            case ["nodes", name, node]:
                return await self.node(account, name, node, metadata)
            case ["topics"]:
                return await self.topics(account)
        raise NotFound(f"no page /api/{'/'.join(parts)}", id="micro.gateway")

    async def _whoami(self, headers: list[tuple[str, str]]) -> dict[str, Any]:
        """Whether sign-in is needed, and who is signed in (never an error)."""
        if self.auth is None:
            return {"required": False, "account": None}
        try:
            account = await self.account(headers)
        except (Unauthorized, InvalidToken):
            return {"required": True, "account": None}
        assert account is not None
        return {"required": True, "account": {"id": account.id, "scopes": list(account.scopes)}}

    async def services(self, account: Account | None) -> list[dict[str, Any]]:
        """Every service the account sees: name, versions and node count, by name."""
        by_name: dict[str, dict[str, Any]] = {}
        names = {r.name for r in await self.client.registry.list_services()}
        for name in sorted(n for n in names if not n.startswith(_TOPIC_PREFIX)):
            try:
                records = await self.records(account, name)
            except MicroError:
                continue  # gone since listed, or not to be seen
            by_name[name] = {
                "name": name,
                "versions": sorted({r.version for r in records}),
                "nodes": sum(len(r.nodes) for r in records),
            }
        return list(by_name.values())

    async def metrics(
        self, account: Account | None, name: str, metadata: Mapping[str, str]
    ) -> dict[str, Any]:
        """The service's recent call rates, error rates and latencies, per endpoint
        (see :meth:`MetricsHistory.series`), reading its nodes' ``/metrics`` if due."""
        records = await self.records(account, name)
        reading = self._reading.get(name)
        if reading is not None:
            # Another page asked at the same time: its reading is this one's too.
            await reading.wait()
        elif self.history.due(name):
            done = self._reading[name] = anyio.Event()
            try:
                nodes = [n for r in records for n in r.nodes]
                readings: dict[str, NodeReading] = {}
                failures: dict[str, str] = {}
                async with anyio.create_task_group() as tg:
                    for node in nodes:
                        tg.start_soon(
                            self._read, name, node.id, node.address, metadata, readings, failures
                        )
                self.history.add(name, readings)
                self._failures[name] = failures
            finally:
                del self._reading[name]
                done.set()
        allowed = {e.name for r in records for e in r.endpoints}
        series = self.history.series(name)
        if self.auth is not None:
            series["endpoints"] = {k: v for k, v in series["endpoints"].items() if k in allowed}
        series["failures"] = self._failures.get(name, {})
        return series

    async def _read(
        self,
        service: str,
        node: str,
        address: str,
        metadata: Mapping[str, str],
        readings: dict[str, NodeReading],
        failures: dict[str, str],
    ) -> None:
        context = self.client.ssl_context
        scheme = "http" if context is None else "https"
        verify: Any = False if context is None else context
        try:
            with anyio.fail_after(HEALTH_TIMEOUT):
                # Nodes are dialled directly, never through a proxy from the environment.
                async with httpx.AsyncClient(
                    verify=verify, timeout=HEALTH_TIMEOUT, trust_env=False
                ) as http:
                    answer = await http.get(f"{scheme}://{address}/metrics", headers=dict(metadata))
            if answer.status_code != 200:
                failures[node] = f"/metrics answered {answer.status_code}"
                return
            readings[node] = parse_node_metrics(answer.text, service)
        except (httpx.HTTPError, OSError, ValueError, TimeoutError) as exc:
            failures[node] = f"/metrics could not be read: {exc or type(exc).__name__}"

    async def node(
        self, account: Account | None, name: str, node_id: str, metadata: Mapping[str, str]
    ) -> dict[str, Any]:
        """One node: its record, health, debug stats and its own call metrics."""
        for record in await self.records(account, name):
            for node in record.nodes:
                if node.id != node_id:
                    continue
                health = next(
                    (
                        h
                        for h in await check_health(self.client, name, metadata=metadata)
                        if h.node == node_id
                    ),
                    None,
                )
                return {
                    "service": name,
                    "version": record.version,
                    "id": node.id,
                    "address": node.address,
                    "metadata": dict(node.metadata),
                    "status": health.status if health else "UNREACHABLE",
                    "detail": health.detail if health else "",
                    "stats": health.stats if health else {},
                    "metrics": self.history.series(name, node=node_id),
                }
        raise NotFound(f"service {name} has no node {node_id}", id="micro.gateway")

    async def topics(self, account: Account | None) -> list[dict[str, Any]]:
        """The broker's topics (announced in the registry by the HTTP broker) and their
        subscribers: node address, queue group, and the services at that address."""
        records = await self.client.registry.list_services()
        by_address: dict[str, set[str]] = {}
        visible: set[str] = set()
        topics: dict[str, list[dict[str, Any]]] = {}
        for name in sorted({r.name for r in records}):
            try:
                full = await self.client.registry.get_service(name)
            except MicroError:
                continue
            if name.startswith(_TOPIC_PREFIX):
                topic = name[len(_TOPIC_PREFIX) :]
                for record in full:
                    for node in record.nodes:
                        topics.setdefault(topic, []).append(
                            {
                                "id": node.id,
                                "address": node.address,
                                "queue": node.metadata.get("queue", ""),
                            }
                        )
                continue
            for record in full:
                for node in record.nodes:
                    by_address.setdefault(node.address, set()).add(name)
                if self._visible(account, record) is not None:
                    visible.add(name)
        answer = []
        for topic in sorted(topics):
            subscribers = []
            for sub in topics[topic]:
                services = sorted(by_address.get(sub["address"], set()))
                if self.auth is not None and not visible.intersection(services):
                    continue
                subscribers.append({**sub, "services": services})
            if subscribers:
                answer.append({"topic": topic, "subscribers": subscribers})
        return answer


def _forwarded(headers: list[tuple[str, str]]) -> dict[str, str]:
    """What the gateway passes on when it reads nodes for a caller: its token."""
    return {k: v for k, v in headers if k == "authorization"}
