"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

Services and the gateway run in the test's event loop (asyncio and Trio);
the browser is driven from a worker thread with Playwright's sync API. A
screenshot of the page is kept under ``MICRO_ARTIFACTS`` if set, else in the
test's tmp dir.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import anyio
import pytest

import micro
from micro.gateway import open_gateway
from micro.registry import MemoryRegistry

from ..servers import require_binary
from .conftest import Greeter
from .test_gateway import Numbers

pytestmark = pytest.mark.anyio

#: milliseconds the page may take for each step
STEP_TIMEOUT = 20_000


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


def _artifact_dir(tmp_path: Path) -> Path:
    where = os.environ.get("MICRO_ARTIFACTS")
    directory = Path(where) if where else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _drive_browser(chromium: str, url: str, service: str, screenshot: Path) -> dict[str, str]:
    """Click through the dashboard; returns what it showed."""
    from playwright.sync_api import expect, sync_playwright

    seen: dict[str, str] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(STEP_TIMEOUT)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            page.click(f'nav button[data-service="{service}"]')
            health = page.locator("#nodes .health")
            expect(health).to_have_text("SERVING")
            row = page.locator('tr[data-endpoint="Greeter.Hello"]')
            seen["request_schema"] = row.locator(".request-schema").inner_text()
            seen["kinds"] = page.locator("#endpoints").inner_text()

            page.select_option("#endpoint", "Greeter.Hello")
            # The form starts from the request's schema.
            seen["prefilled"] = page.input_value("#request")
            page.fill("#request", '{"name": "browser"}')
            page.fill("#metadata", "x-tenant=acme")
            page.click("#call")
            expect(page.locator("#response")).to_contain_text("Hello browser")
            seen["unary"] = page.locator("#response").inner_text()

            page.select_option("#endpoint", "Numbers.Count")
            page.fill("#request", '{"value": 3}')
            page.click("#call")
            expect(page.locator("#response")).to_contain_text('{"value":2}')
            seen["stream"] = page.locator("#response").inner_text()

            page.select_option("#endpoint", "Greeter.Hello")
            page.fill("#request", "{not json")
            page.click("#call")
            expect(page.locator("#response")).to_contain_text("400")
            seen["error"] = page.locator("#response").inner_text()
            page.screenshot(path=str(screenshot), full_page=True)
            seen["page_errors"] = "\n".join(errors)
        finally:
            browser.close()
    return seen


async def test_dashboard_in_chromium(tmp_path: Path, anyio_backend: str) -> None:
    chromium = _chromium()
    registry = MemoryRegistry()
    service = micro.Service("shop", address="127.0.0.1:0", registry=registry)
    service.handle(Greeter())
    service.handle(Numbers())
    screenshot = _artifact_dir(tmp_path) / f"dashboard-{anyio_backend}.png"
    async with service.running(), open_gateway("127.0.0.1:0", registry=registry) as address:
        seen = await anyio.to_thread.run_sync(
            _drive_browser, chromium, f"http://{address}/", "shop", screenshot
        )
    assert seen["page_errors"] == ""
    assert '"name"' in seen["request_schema"] and '"Req"' in seen["request_schema"]
    assert "server_stream" in seen["kinds"]
    assert seen["prefilled"] == '{"name":""}'
    assert '"message": "Hello browser"' in seen["unary"]
    assert seen["stream"].splitlines() == ['{"value":0}', '{"value":1}', '{"value":2}']
    assert "invalid JSON body" in seen["error"]
    assert screenshot.stat().st_size > 0
    assert shutil.which("chromium") == chromium
