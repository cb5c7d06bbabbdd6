"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), and its API.

Services, a load on them and the gateway run in the test's event loop
(asyncio and Trio); the browser is driven from a worker thread with
Playwright's sync API. Screenshots of each view are kept under
``MICRO_ARTIFACTS`` if set, else in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import pytest

import micro
from micro.auth import Account, AccountType, Auth, KeySet, Resource, Rule
from micro.gateway import open_gateway
from micro.registry import MemoryRegistry, Node, ServiceRecord
from micro.store import FileStore, MemoryStore

from ...servers import free_port, require_binary
from .mcp_requests import ACCEPT, INITIALIZE
from .test_gateway import Numbers

pytestmark = pytest.mark.anyio

#: milliseconds the page may take for each step
STEP_TIMEOUT = 20_000
#: samples of live metrics the charts must show before they are screenshotted
CHART_POINTS = 8


@dataclass
class Order:
    item: str
    quantity: int = 1
    express: bool = False


@dataclass
class Receipt:
    item: str
    quantity: int
    express: bool


@dataclass
class Address:
    street: str
    city: str = "Paris"


@dataclass
class Delivery:
    item: str
    to: Address
    speed: Literal["slow", "fast"] = "slow"
    notes: list[str] = field(default_factory=list)
    floor: int | None = None


class Shop:
    def __init__(self) -> None:
        self.restocked = anyio.Event()

    async def order(self, req: Order) -> Receipt:
        """Place an order for some quantity of an item.

        More than 8 of anything is refused.
        """
        await anyio.sleep(random.uniform(0.001, 0.02))
        if req.quantity > 8:
            raise micro.BadRequest(f"at most 8 of {req.item}")
        return Receipt(req.item, req.quantity, req.express)

    async def deliver(self, req: Delivery) -> Delivery:
        """Deliver an item to an address."""
        return req

    async def watch(self, req: Order) -> AsyncIterator[Receipt]:
        """One order of an item now, another once it is restocked."""
        yield Receipt(req.item, 1, req.express)
        await self.restocked.wait()
        yield Receipt(req.item, 2, req.express)

    async def browse(self, req: Order) -> AsyncIterator[Receipt]:
        """Every size of order of an item, one by one."""
        for quantity in range(1, req.quantity + 1):
            yield Receipt(req.item, quantity, req.express)


def _chromium() -> str:
    path = require_binary("chromium", "chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        reason = f"the playwright package is missing ({exc}); pip install -e '.[test]'"
        if os.environ.get("MICRO_REQUIRE_BACKENDS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def _artifact_dir(tmp_path: Path, backend: str = "") -> Path:
    where = os.environ.get("MICRO_ARTIFACTS")
    directory = (Path(where) if where else tmp_path) / backend
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _shop(registry: MemoryRegistry, shop: Shop | None = None, **options: Any) -> micro.Service:
    service = micro.Service("shop", address="127.0.0.1:0", registry=registry, **options)
    service.handle(shop or Shop())
    service.handle(Numbers())

    @service.subscriber("orders.placed", queue="mailer")
    async def mail(order: dict[str, Any]) -> None:
        pass

    return service


async def _load(registry: MemoryRegistry, stop: anyio.Event, metadata: dict[str, str]) -> None:
    """Calls to the shop until ``stop``: one in five refused, a few ms each."""
    async with micro.Client(registry=registry) as client:

        async def worker() -> None:
            while not stop.is_set():
                quantity = random.choice([1, 2, 3, 4, 9])
                try:
                    await client.call(
                        "shop",
                        "Shop.Order",
                        {"item": "tea", "quantity": quantity},
                        dict,
                        metadata=metadata,
                    )
                except micro.MicroError:
                    pass
                await anyio.sleep(0.005)

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(worker)


def _drive_browser(
    chromium: str, url: str, shots: Path, restock: Callable[[], None]
) -> dict[str, Any]:
    """Click through every view of the dashboard; returns what it showed."""
    from playwright.sync_api import expect, sync_playwright

    seen: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(STEP_TIMEOUT)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)

            # Overview: a card per service.
            expect(page.locator("#overview .card")).to_have_count(1)
            seen["overview"] = page.locator("#overview").inner_text()
            page.screenshot(path=str(shots / "overview.png"), full_page=True)

            # A service: nodes with their health, endpoints with live charts.
            page.click('aside a[data-service="shop"]')
            expect(page.locator("#nodes .health .badge")).to_have_text("SERVING")
            order = page.locator('.endpoint[data-endpoint="Shop.Order"]')
            page.wait_for_function(
                """n => [...document.querySelectorAll(
                       '.endpoint[data-endpoint="Shop.Order"] .metric svg')]
                     .every(svg => Number(svg.dataset.points) >= n)""",
                arg=CHART_POINTS,
            )
            seen["overall"] = page.locator("#service-charts").inner_text()
            seen["overall_points"] = page.locator("#service-charts svg").evaluate_all(
                "els => els.map(e => Number(e.dataset.points))"
            )
            seen["description"] = order.locator(".description").inner_text()
            seen["values"] = {
                m: order.locator(f'.metric[data-metric="{m}"] .metric-value').inner_text()
                for m in ("rate", "error_rate", "p50", "p99")
            }
            seen["paths"] = order.locator(".metric svg path").count()
            seen["schemas"] = order.locator(".request-schema").text_content()
            page.screenshot(path=str(shots / "service.png"), full_page=True)

            # A call from the form generated from the request schema.
            page.click('button[data-call="Shop.Order"]')
            seen["fields"] = page.locator("#request-form [data-field]").evaluate_all(
                "els => els.map(e => [e.dataset.field, e.tagName.toLowerCase(), e.type])"
            )
            page.fill("#field-item", "green tea")
            page.fill("#field-quantity", "2")
            page.check("#field-express")
            page.fill("#metadata", "x-tenant=acme")
            page.click("#call")
            expect(page.locator("#answer")).to_contain_text("green tea")
            seen["unary"] = page.locator("#answer").inner_text()
            # The same request as JSON, edited, and back in the form.
            page.click("#mode-json")
            seen["as_json"] = page.input_value("#request")
            page.fill("#request", '{"item": "coffee", "quantity": 3}')
            page.click("#mode-form")
            seen["back_in_form"] = [
                page.input_value("#field-item"),
                page.input_value("#field-quantity"),
            ]
            page.screenshot(path=str(shots / "call.png"), full_page=True)

            # Nested objects, enums, lists and optional values get fields of their own,
            # starting at their defaults.
            page.select_option("#endpoint", "Shop.Deliver")
            seen["deliver_fields"] = page.locator("#request-form [data-field]").evaluate_all(
                "els => els.map(e => [e.dataset.field, e.tagName.toLowerCase()])"
            )
            seen["defaults"] = [
                page.input_value('[data-field="to.city"]'),
                page.locator('[data-field="speed"] option:checked').inner_text(),
            ]
            page.fill("#field-item", "piano")
            page.fill('[data-field="to.street"]', "1 rue de Rivoli")
            page.select_option('[data-field="speed"]', label='"fast"')
            page.fill('[data-field="notes"]', '["ring twice"]')
            page.fill('[data-field="floor"]', "3")
            page.click("#call")
            expect(page.locator("#answer")).to_contain_text("ring twice")
            seen["delivered"] = page.locator("#answer").inner_text()

            # A server stream, shown message by message.
            page.select_option("#endpoint", "Shop.Browse")
            page.fill("#field-item", "tea")
            page.fill("#field-quantity", "3")
            page.click("#call")
            expect(page.locator("#stream li")).to_have_count(3)
            expect(page.locator("#stream-state")).to_contain_text("3 messages, ended")
            seen["stream"] = page.locator("#stream li .body").all_inner_texts()
            page.screenshot(path=str(shots / "stream.png"), full_page=True)

            # A stream's messages are shown as they come, not when it ends.
            page.select_option("#endpoint", "Shop.Watch")
            page.fill("#field-item", "tea")
            page.click("#call")
            expect(page.locator("#stream li")).to_have_count(1)
            seen["while_streaming"] = page.locator("#stream-state").inner_text()
            restock()
            expect(page.locator("#stream li")).to_have_count(2)
            expect(page.locator("#stream-state")).to_contain_text("2 messages, ended")

            # Invalid JSON gets the gateway's error.
            page.select_option("#endpoint", "Shop.Order")
            page.click("#mode-json")
            page.fill("#request", "{not json")
            page.click("#call")
            expect(page.locator("#answer")).to_contain_text("400")
            seen["error"] = page.locator("#answer").inner_text()

            # A node's page: its debug stats and its own charts.
            page.locator("#nodes td a").first.click()
            expect(page.locator('#stats tr[data-stat="uptime_s"]')).to_be_visible()
            page.wait_for_function(
                """n => [...document.querySelectorAll(
                       '#node-endpoints [data-endpoint="Shop.Order"] .metric svg')]
                     .some(svg => Number(svg.dataset.points) >= n)""",
                arg=2,
            )
            seen["stats"] = page.locator("#stats").inner_text()
            page.screenshot(path=str(shots / "node.png"), full_page=True)

            # The broker's topics and their subscribers.
            page.click('header a[data-tab="topics"]')
            topic = page.locator('tr[data-topic="orders.placed"]')
            expect(topic).to_be_visible()
            seen["topic"] = topic.inner_text()
            page.screenshot(path=str(shots / "topics.png"), full_page=True)
            seen["page_errors"] = "\n".join(errors)
        finally:
            browser.close()
    return seen


async def test_dashboard_in_chromium(tmp_path: Path, anyio_backend: str) -> None:
    chromium = _chromium()
    registry = MemoryRegistry()
    shop = Shop()
    service = _shop(registry, shop)
    shots = _artifact_dir(tmp_path, anyio_backend)
    stop = anyio.Event()

    def restock() -> None:
        anyio.from_thread.run_sync(shop.restocked.set)

    async with (
        service.running(),
        open_gateway("127.0.0.1:0", registry=registry) as address,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_load, registry, stop, {})
        try:
            seen = await anyio.to_thread.run_sync(
                _drive_browser, chromium, f"http://{address}/", shots, restock
            )
        finally:
            stop.set()
    assert seen["page_errors"] == ""
    assert "shop" in seen["overview"] and "1 node" in seen["overview"]
    assert seen["description"] == "Place an order for some quantity of an item."
    # Under load: calls per second, refusals per second and latencies, all non-zero.
    values = seen["values"]
    assert values["rate"].endswith("/s") and float(values["rate"].rstrip("k/s")) > 0
    assert values["error_rate"].endswith("/s") and float(values["error_rate"].rstrip("k/s")) > 0
    assert values["p50"].endswith(("ms", "µs")) and values["p99"].endswith(("ms", "µs"))
    assert seen["paths"] >= 8  # a line and its area per chart
    # The service's calls, all endpoints together: requests, errors, share failing.
    assert "requests" in seen["overall"] and "%" in seen["overall"]
    assert all(n >= CHART_POINTS for n in seen["overall_points"]), seen["overall_points"]
    assert '"quantity"' in seen["schemas"]
    assert seen["fields"] == [
        ["item", "input", "text"],
        ["quantity", "input", "number"],
        ["express", "input", "checkbox"],
    ]
    assert '"item": "green tea"' in seen["unary"] and '"express": true' in seen["unary"]
    assert '"quantity": 2' in seen["as_json"] and '"express": true' in seen["as_json"]
    assert seen["back_in_form"] == ["coffee", "3"]
    assert seen["deliver_fields"] == [
        ["item", "input"],
        ["to", "fieldset"],
        ["to.street", "input"],
        ["to.city", "input"],
        ["speed", "select"],
        ["notes", "textarea"],
        ["floor", "input"],
    ]
    assert seen["defaults"] == ["Paris", '"slow"']
    delivered = json.loads(seen["delivered"])
    assert delivered == {
        "item": "piano",
        "to": {"street": "1 rue de Rivoli", "city": "Paris"},
        "speed": "fast",
        "notes": ["ring twice"],
        "floor": 3,
    }
    assert [line.count('"quantity":') for line in seen["stream"]] == [1, 1, 1]
    assert '"quantity":3' in seen["stream"][2]
    assert seen["while_streaming"] == "streaming…"
    assert "invalid JSON body" in seen["error"]
    assert "uptime_s" in seen["stats"] and "memory_rss_bytes" in seen["stats"]
    assert "shop" in seen["topic"] and "queue mailer" in seen["topic"]
    for name in ("overview", "service", "call", "stream", "node", "topics"):
        assert (shots / f"{name}.png").stat().st_size > 0
    assert shutil.which("chromium") == chromium


# -- with auth ---------------------------------------------------------------------------

RULES = [
    Rule("shop-staff", "shop", Resource("service", "shop", "*")),
    Rule("billing-staff", "billing", Resource("service", "billing", "*")),
]


class Billing:
    async def charge(self, req: Order) -> Receipt:
        return Receipt(req.item, req.quantity, req.express)


def _sign_in(chromium: str, url: str, secret: str, shots: Path) -> dict[str, Any]:
    from playwright.sync_api import expect, sync_playwright

    seen: dict[str, Any] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(STEP_TIMEOUT)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            expect(page.locator("#signin")).to_be_visible()
            seen["before"] = page.locator("aside").inner_text()
            page.fill("#account-id", "alice")
            page.fill("#account-secret", "wrong")
            page.click("#signin-button")
            expect(page.locator("#signin-error")).not_to_be_empty()
            seen["refused"] = page.locator("#signin-error").inner_text()
            page.screenshot(path=str(shots / "signin.png"), full_page=True)
            page.fill("#account-secret", secret)
            page.click("#signin-button")
            expect(page.locator("#account")).to_have_text("alice")
            expect(page.locator("#overview .card")).to_have_count(1)
            seen["services"] = page.locator("aside").inner_text()
            page.click('aside a[data-service="shop"]')
            expect(page.locator("#nodes .health .badge")).to_have_text("SERVING")
            page.wait_for_function(
                """() => Number(document.querySelector(
                     '.endpoint[data-endpoint="Shop.Order"] .metric svg').dataset.points) >= 2"""
            )
            page.select_option("#endpoint", "Shop.Order")
            page.fill("#field-item", "tea")
            page.click("#call")
            expect(page.locator("#answer")).to_contain_text('"item": "tea"')
            page.screenshot(path=str(shots / "signed-in.png"), full_page=True)
            page.click("#signout")
            expect(page.locator("#signin")).to_be_visible()
            seen["page_errors"] = "\n".join(errors)
        finally:
            browser.close()
    return seen


async def test_dashboard_sign_in_in_chromium(tmp_path: Path, anyio_backend: str) -> None:
    chromium = _chromium()
    registry = MemoryRegistry()
    keys = KeySet.generate()
    store = MemoryStore()
    service = _shop(registry, auth=Auth(keys, store=store, rules=RULES), store=store)
    billing = micro.Service("billing", address="127.0.0.1:0", registry=registry)
    billing.handle(Billing())
    shots = _artifact_dir(tmp_path, anyio_backend)
    stop = anyio.Event()
    async with (
        Auth(keys, store=MemoryStore(), rules=RULES) as auth,
        service.running(),
        billing.running(),
        open_gateway("127.0.0.1:0", registry=registry, auth=auth) as address,
    ):
        # The gateway and the shop keep accounts in stores of their own here; a token
        # from either verifies with the keys they share.
        _, secret = await auth.generate("alice", scopes=["shop"])
        loader = auth.issue(Account("loader", AccountType.SERVICE, ("shop",)))
        load_auth = {"authorization": f"Bearer {loader.access_token}"}
        async with anyio.create_task_group() as tg:
            tg.start_soon(_load, registry, stop, load_auth)
            try:
                seen = await anyio.to_thread.run_sync(
                    _sign_in, chromium, f"http://{address}/", secret, shots
                )
            finally:
                stop.set()
    assert seen["page_errors"] == ""
    assert "shop" not in seen["before"]
    assert "401" in seen["refused"] or "invalid" in seen["refused"].lower()
    assert "shop" in seen["services"] and "billing" not in seen["services"]


async def test_dashboard_api_with_auth(anyio_backend: str) -> None:
    registry = MemoryRegistry()
    keys = KeySet.generate()
    shop = _shop(registry)
    billing = micro.Service("billing", address="127.0.0.1:0", registry=registry)
    billing.handle(Billing())
    async with (
        Auth(keys, store=MemoryStore(), rules=RULES) as auth,
        shop.running(),
        billing.running(),
        open_gateway("127.0.0.1:0", registry=registry, auth=auth) as address,
        httpx.AsyncClient(base_url=f"http://{address}", trust_env=False) as http,
    ):
        _, secret = await auth.generate("alice", scopes=["shop"])
        # The page itself is public; what it shows is not.
        page = await http.get("/")
        assert page.status_code == 200 and b"static/dashboard.js" in page.content
        assert (await http.get("/api/auth")).json() == {"required": True, "account": None}
        for path in ("/api/services", "/api/services/shop", "/api/topics", "/api/health/shop"):
            refused = await http.get(path)
            assert refused.status_code == 401, path
            assert refused.content.endswith(b"\n")
        bad = await http.get("/api/services", headers={"authorization": "Bearer nope"})
        assert bad.status_code == 401
        wrong = await http.post("/api/login", json={"id": "alice", "secret": "nope"})
        assert wrong.status_code == 401
        assert (await http.post("/api/login", content=b"[1")).status_code == 400
        assert (await http.post("/api/login", json={"id": 1, "secret": 2})).status_code == 400
        login = await http.post("/api/login", json={"id": "alice", "secret": secret})
        assert login.status_code == 200
        token = {"authorization": f"Bearer {login.json()['access_token']}"}
        # The page renews its token with the refresh token when it expires.
        renewed = await http.post(
            "/api/refresh", json={"refresh_token": login.json()["refresh_token"]}
        )
        assert renewed.status_code == 200 and renewed.json()["account"] == "alice"
        renewed_token = {"authorization": f"Bearer {renewed.json()['access_token']}"}
        assert (await http.get("/api/services", headers=renewed_token)).status_code == 200
        stale = await http.post(
            "/api/refresh", json={"refresh_token": login.json()["access_token"]}
        )
        assert stale.status_code == 401
        assert (await http.post("/api/refresh", json={"token": "x"})).status_code == 400
        who = (await http.get("/api/auth", headers=token)).json()
        assert who == {"required": True, "account": {"id": "alice", "scopes": ["shop"]}}
        services = (await http.get("/api/services", headers=token)).json()
        assert [s["name"] for s in services] == ["shop"]
        # A service the rules keep from alice is as good as absent.
        assert (await http.get("/api/services/billing", headers=token)).status_code == 404
        assert (await http.get("/api/health/billing", headers=token)).status_code == 404
        assert (await http.get("/api/services/billing/metrics", headers=token)).status_code == 404
        topics = (await http.get("/api/topics", headers=token)).json()
        assert [t["topic"] for t in topics] == ["orders.placed"]
        # Calls through the gateway follow the same rules.
        order = {"item": "tea", "quantity": 1}
        assert (await http.post("/shop/Shop.Order", json=order)).status_code == 401
        called = await http.post("/shop/Shop.Order", json=order, headers=token)
        assert called.status_code == 200 and called.json()["item"] == "tea"
        forbidden = await http.post("/billing/Billing.Charge", json=order, headers=token)
        assert forbidden.status_code == 403
        assert "alice may not call billing" in forbidden.json()["detail"]


async def test_dashboard_api_metrics_nodes_and_topics(anyio_backend: str) -> None:
    registry = MemoryRegistry()
    shop = _shop(registry)
    async with (
        shop.running(),
        open_gateway("127.0.0.1:0", registry=registry) as address,
        httpx.AsyncClient(base_url=f"http://{address}", trust_env=False) as http,
        micro.Client(registry=registry) as client,
    ):
        assert (await http.get("/api/auth")).json() == {"required": False, "account": None}
        assert (await http.post("/api/login", json={"id": "a", "secret": "b"})).status_code == 404
        assert (await http.post("/api/refresh", json={"refresh_token": "x"})).status_code == 404
        services = (await http.get("/api/services")).json()
        assert services == [{"name": "shop", "versions": ["latest"], "nodes": 1}]
        described = (await http.get("/api/services/shop")).json()
        endpoints = {e["name"]: e for e in described[0]["endpoints"]}
        assert endpoints["Shop.Browse"]["description"].startswith("Every size of order")

        async def metrics() -> dict[str, Any]:
            answer = await http.get("/api/services/shop/metrics")
            assert answer.status_code == 200
            data: dict[str, Any] = answer.json()
            return data

        first = await metrics()
        assert first["samples"] == 1 and first["failures"] == {}
        # The counters are the process's: other tests' calls may be counted already.
        before = first["endpoints"].get("Shop.Order", {"requests": 0, "errors": 0})
        for quantity in (1, 2, 9):
            try:
                await client.call("shop", "Shop.Order", {"item": "tea", "quantity": quantity}, dict)
            except micro.BadRequest:
                pass
        with anyio.fail_after(10):
            while True:
                data = await metrics()
                points = data["endpoints"].get("Shop.Order", {}).get("points", [])
                if any(p["rate"] > 0 for p in points):
                    break
                await anyio.sleep(0.2)
        busy = next(p for p in points if p["rate"] > 0)
        assert busy["error_rate"] > 0 and busy["p50"] > 0 and busy["p99"] >= busy["p50"]
        assert data["endpoints"]["Shop.Order"]["requests"] == before["requests"] + 3
        assert data["endpoints"]["Shop.Order"]["errors"] == before["errors"] + 1

        node_id = described[0]["nodes"][0]["id"]
        node = (await http.get(f"/api/nodes/shop/{node_id}")).json()
        assert node["status"] == "SERVING" and node["stats"]["uptime_s"] >= 0
        assert node["metrics"]["endpoints"]["Shop.Order"]["requests"] == before["requests"] + 3
        assert (await http.get("/api/nodes/shop/nope")).status_code == 404
        topics = (await http.get("/api/topics")).json()
        assert topics == [
            {
                "topic": "orders.placed",
                "subscribers": [
                    {
                        "id": topics[0]["subscribers"][0]["id"],
                        "address": described[0]["nodes"][0]["address"],
                        "queue": "mailer",
                        "services": ["shop"],
                    }
                ],
            }
        ]
        for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            asset = await http.get(f"/static/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        assert (await http.get("/static/nope.js")).status_code == 404
        assert (await http.get("/api/nope")).status_code == 404


async def test_dashboard_api_reports_a_node_it_cannot_read(anyio_backend: str) -> None:
    """A registered node that does not answer: its health and metrics say so, and the
    gateway goes on serving."""
    registry = MemoryRegistry()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{probe.getsockname()[1]}"  # closed when the block ends
    await registry.register(ServiceRecord("ghost", nodes=(Node("ghost-1", gone),)))
    async with (
        open_gateway("127.0.0.1:0", registry=registry) as address,
        httpx.AsyncClient(base_url=f"http://{address}", trust_env=False) as http,
    ):
        metrics = await http.get("/api/services/ghost/metrics")
        assert metrics.status_code == 200
        assert metrics.json()["failures"]["ghost-1"].startswith("/metrics could not be read")
        assert metrics.json()["endpoints"] == {}
        health = (await http.get("/api/health/ghost")).json()
        assert [(h["node"], h["status"]) for h in health] == [("ghost-1", "UNREACHABLE")]
        node = (await http.get("/api/nodes/ghost/ghost-1")).json()
        assert node["status"] == "UNREACHABLE" and node["stats"] == {}
        assert (await http.get("/api/services/nope/metrics")).status_code == 404
        assert (await http.get("/api/services")).json() == [
            {"name": "ghost", "versions": ["latest"], "nodes": 1}
        ]


async def test_gateway_command_with_auth_keys(tmp_path: Path, anyio_backend: str) -> None:
    """``micro gateway --auth-keys``: accounts from the store the services share sign in."""
    keys = KeySet.generate()
    keys.save(tmp_path / "keys")
    store_path = tmp_path / "auth.db"
    async with Auth(keys, store=FileStore(store_path)) as auth:
        _, secret = await auth.generate("alice", scopes=["admin"])
    port = free_port()
    env = {**os.environ, "MICRO_AUTH_KEYS": str(tmp_path / "keys")}
    env.pop("MICRO_REGISTRY", None)
    command = [
        sys.executable, "-m", "micro.cli", "--registry", "memory",
        "--store", f"file://{store_path}", "gateway", "--address", f"127.0.0.1:{port}",
    ]  # fmt: skip
    process = await anyio.open_process(command, env=env)
    try:
        assert process.stderr is not None
        with anyio.fail_after(30):
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stderr.receive(1)
        assert line.decode().strip() == f"gateway serving on http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as http:
            assert (await http.get("/api/services")).status_code == 401
            login = await http.post("/api/login", json={"id": "alice", "secret": secret})
            assert login.status_code == 200, login.text
            token = {"authorization": f"Bearer {login.json()['access_token']}"}
            signed = await http.get("/api/services", headers=token)
            assert signed.status_code == 200 and signed.json() == []
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_mcp_needs_a_token_when_the_gateway_has_auth(anyio_backend: str) -> None:
    """With auth, /mcp (the tools and even their list) is for signed-in callers only."""
    registry = MemoryRegistry()
    initialize, accept = INITIALIZE, ACCEPT
    async with (
        Auth(KeySet.generate(), store=MemoryStore(), rules=RULES) as auth,
        open_gateway("127.0.0.1:0", registry=registry, auth=auth) as address,
        httpx.AsyncClient(base_url=f"http://{address}", trust_env=False) as http,
    ):
        _, secret = await auth.generate("alice", scopes=["shop"])
        refused = await http.post("/mcp", json=initialize, headers=accept)
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in refused.json()["detail"]
        bad = await http.post("/mcp", json=initialize, headers={**accept, "authorization": "x"})
        assert bad.status_code == 401
        login = await http.post("/api/login", json={"id": "alice", "secret": secret})
        token = {"authorization": f"Bearer {login.json()['access_token']}"}
        answered = await http.post("/mcp", json=initialize, headers={**accept, **token})
        assert answered.status_code == 200, answered.text
        assert "serverInfo" in answered.text


async def test_sign_in_is_throttled_per_account(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SIGN_IN_ATTEMPTS failures, an account's sign-ins are refused (429) until the
    window has passed, even with the right secret; other accounts sign in as before."""
    from micro.gateway import api

    monkeypatch.setattr(api, "SIGN_IN_WINDOW", 1.0)
    async with (
        Auth(KeySet.generate(), store=MemoryStore(), rules=RULES) as auth,
        open_gateway("127.0.0.1:0", registry=MemoryRegistry(), auth=auth) as address,
        httpx.AsyncClient(base_url=f"http://{address}", trust_env=False) as http,
    ):
        _, alice = await auth.generate("alice", scopes=["shop"])
        _, bob = await auth.generate("bob", scopes=["shop"])
        for _ in range(api.SIGN_IN_ATTEMPTS):
            wrong = await http.post("/api/login", json={"id": "alice", "secret": "guess"})
            assert wrong.status_code == 401
        right = await http.post("/api/login", json={"id": "alice", "secret": alice})
        assert right.status_code == 429, right.text
        assert "too many failed sign-ins as alice" in right.json()["detail"]
        assert (await http.post("/api/login", json={"id": "bob", "secret": bob})).status_code == 200
        with anyio.fail_after(10):  # the window passes: alice signs in again
            while right.status_code == 429:
                await anyio.sleep(0.1)
                right = await http.post("/api/login", json={"id": "alice", "secret": alice})
        assert right.status_code == 200, right.text
