"""Debug stats of a running service: uptime, calls, errors, memory, tasks."""

from __future__ import annotations

import gc
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio

__all__ = ["DEBUG_NAME", "DebugService", "memory_rss", "runtime_stats"]


def memory_rss() -> int:
    """The process's resident memory in bytes (peak RSS where the current is unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def runtime_stats(started: float) -> dict[str, Any]:
    """Process-wide figures, read now (call inside the event loop)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "started": started,
        "uptime_s": round(time.time() - started, 3),
        "memory_rss_bytes": memory_rss(),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "tasks": len(anyio.get_running_tasks()),
        "threads": threading.active_count(),
        "gc_collections": sum(s["collections"] for s in gc.get_stats()),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "backend": _backend(),
    }


def _backend() -> str:
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
            return "trio"
        except RuntimeError:
            pass
    return "asyncio"


DEBUG_NAME = "micro.Debug"


class DebugService:
    """The ``micro.Debug`` handler: ``micro.Debug.Stats`` answers the service's stats."""

    def __init__(self, stats: Callable[[], Mapping[str, Any]]) -> None:
        self._stats = stats

    async def stats(self, req: dict[str, Any]) -> dict[str, Any]:
        return dict(self._stats())
