"""Readiness: named checks, each with a timeout, run together when a probe asks.

A service is *live* while its event loop answers (``GET /health``). It is
*ready* (``GET /health/ready``) once it has registered and until it starts
draining, and only while every check passes: by default that the registry,
the broker and the store answer, plus the checks the program adds. A check is
an async function that returns (or returns True) when all is well and raises
(or returns False) when not; one that runs past its timeout has failed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

__all__ = ["Check", "CheckResult", "Readiness", "HealthChecks"]

Check = Callable[[], Awaitable[Any]]

DEFAULT_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    duration: float
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": "ok" if self.ok else "failing",
            "duration_ms": round(self.duration * 1000, 3),
        }
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    #: why not, when the service itself is not (starting, draining)
    reason: str
    checks: tuple[CheckResult, ...]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ready" if self.ready else "not ready"}
        if self.reason:
            out["reason"] = self.reason
        out["checks"] = {result.name: result.to_dict() for result in self.checks}
        return out


class HealthChecks:
    """The named checks of one service."""

    def __init__(self) -> None:
        self._checks: dict[str, tuple[Check, float]] = {}

    def add(self, name: str, check: Check, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Add (or replace) the check ``name``."""
        if timeout <= 0:
            raise ValueError("a check's timeout must be positive")
        self._checks[name] = (check, timeout)

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def run(self) -> tuple[CheckResult, ...]:
        """Run every check at once; each result in the order the checks were added."""
        results: dict[str, CheckResult] = {}

        async def run_one(name: str, check: Check, timeout: float) -> None:
            started = time.perf_counter()
            error = ""
            ok = False
            with anyio.move_on_after(timeout) as scope:
                try:
                    ok = (await check()) is not False
                    if not ok:
                        error = "check returned False"
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
            if scope.cancelled_caught:
                ok, error = False, f"timed out after {timeout:g}s"
            results[name] = CheckResult(name, ok, time.perf_counter() - started, error)

        async with anyio.create_task_group() as tg:
            for name, (check, timeout) in self._checks.items():
                tg.start_soon(run_one, name, check, timeout)
        return tuple(results[name] for name in self._checks if name in results)
