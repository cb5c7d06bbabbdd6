"""One service's readiness: its phase and its checks, the gRPC statuses, the pages."""

from __future__ import annotations

import json

import pytest

from micro.health import ServingStatus
from micro.health.readiness import ServiceHealth

pytestmark = pytest.mark.anyio


async def test_only_a_serving_service_is_ready() -> None:
    phase = "starting"
    health = ServiceHealth("svc", "svc-1", phase=lambda: phase)
    result = await health.readiness()
    assert (result.ready, result.reason, result.checks) == (False, "starting", ())
    assert health.status.get("") == ServingStatus.NOT_SERVING
    phase = "serving"
    result = await health.readiness()
    assert result.ready and result.reason == ""
    assert health.status.get("") == ServingStatus.SERVING
    assert health.status.get("svc") == ServingStatus.SERVING


async def test_a_failing_check_makes_it_unready() -> None:
    health = ServiceHealth("svc", "svc-1", phase=lambda: "serving")

    async def database() -> bool:
        return False

    async def cache() -> None:
        return None

    health.checks.add("database", database)
    health.checks.add("cache", cache)
    result = await health.readiness()
    assert not result.ready
    assert result.reason == "failing: database"
    assert [(c.name, c.ok) for c in result.checks] == [("database", False), ("cache", True)]
    assert health.status.get("svc") == ServingStatus.NOT_SERVING


async def test_draining_while_the_checks_run_is_not_ready() -> None:
    phases = ["serving", "draining"]
    health = ServiceHealth("svc", "svc-1", phase=lambda: phases.pop(0))
    result = await health.readiness()
    assert not result.ready
    assert result.reason == "draining"


async def test_the_pages_answer_json_lines() -> None:
    phase = "serving"
    health = ServiceHealth("svc", "svc-1", phase=lambda: phase)
    pages = health.pages()
    live = await pages["/health"]()
    assert (live.status, live.content_type) == (200, "application/json")
    assert live.body.endswith(b"\n")
    assert json.loads(live.body) == {"status": "ok", "service": "svc", "node": "svc-1"}
    ready = await pages["/health/ready"]()
    assert ready.status == 200
    assert json.loads(ready.body) == {"status": "ready", "checks": {}}
    phase = "draining"
    ready = await pages["/health/ready"]()
    assert ready.status == 503
    assert json.loads(ready.body) == {"status": "not ready", "reason": "draining", "checks": {}}
