"""One service's health, answered the same to gRPC and HTTP probes.

:class:`ServiceHealth` decides whether a service is ready: only while it is
serving (not starting, not draining) and every check passes. Each answer
sets the gRPC health service's statuses (the server's, ``""``, and the
service's own name), so ``grpc.health.v1.Health`` and ``GET /health/ready``
agree; :meth:`~ServiceHealth.keep_current` re-runs the checks between
probes, so a gRPC ``Watch`` sees a change without being asked. Its
:meth:`~ServiceHealth.pages` are the listener's ``GET /health`` (live: the
event loop answers) and ``GET /health/ready`` (503 when not ready, with the
result of each check).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio

from ..transport.dispatch import WebResponse, WebRoute
from .checks import HealthChecks, Readiness
from .grpc import HealthStatus, ServingStatus

__all__ = ["ServiceHealth", "json_page"]


class ServiceHealth:
    """Readiness of the service ``name``; ``phase()`` says what it is doing now
    (``stopped``, ``starting``, ``serving`` or ``draining``)."""

    def __init__(self, name: str, node: str, *, phase: Callable[[], str]) -> None:
        self.name = name
        self.node = node
        self._phase = phase
        #: the serving statuses the gRPC health service answers with
        self.status = HealthStatus()
        #: the named checks run for each readiness answer
        self.checks = HealthChecks()

    def set(self, serving: bool) -> None:
        """Set the server's and the service's gRPC status."""
        status = ServingStatus.SERVING if serving else ServingStatus.NOT_SERVING
        self.status.set("", status)
        self.status.set(self.name, status)

    async def readiness(self) -> Readiness:
        """Run the checks now; ready when serving and every check passes. The gRPC
        statuses are set to the answer."""
        phase = self._phase()
        if phase != "serving":
            result = Readiness(False, phase, ())
        else:
            checks = await self.checks.run()
            failing = [c.name for c in checks if not c.ok]
            reason = f"failing: {', '.join(failing)}" if failing else ""
            result = Readiness(not failing, reason, checks)
            phase = self._phase()
            if phase != "serving":  # began draining while the checks ran
                result = Readiness(False, phase, checks)
        self.set(result.ready)
        return result

    async def keep_current(self, interval: float) -> None:
        """Answer readiness every ``interval`` seconds, until cancelled (a supervised part)."""
        while True:
            await self.readiness()
            await anyio.sleep(interval)

    def pages(self) -> dict[str, WebRoute]:
        """``GET /health`` and ``GET /health/ready``, by path."""

        async def live() -> WebResponse:
            return json_page({"status": "ok", "service": self.name, "node": self.node})

        async def ready() -> WebResponse:
            result = await self.readiness()
            return json_page(result.to_dict(), status=200 if result.ready else 503)

        return {"/health": live, "/health/ready": ready}


def json_page(value: Any, *, status: int = 200) -> WebResponse:
    """A JSON answer to a GET; it ends its line, as plain call answers do, for curl."""
    return WebResponse(status, "application/json", json.dumps(value).encode() + b"\n")
