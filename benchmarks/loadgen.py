"""Closed-loop load: N workers call as fast as they can; keep what lands in the window."""

import json
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import anyio

Call = Callable[[], Awaitable[None]]


@dataclass
class LoadResult:
    """One client process's figures for one workload."""

    system: str
    workload: str
    concurrency: int
    duration_s: float
    requests: int
    errors: int
    req_s: float
    p50_ms: float
    p99_ms: float
    first_error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (``q`` in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def run_load(
    call: Call,
    *,
    system: str,
    workload: str,
    concurrency: int,
    warmup: float,
    duration: float,
) -> LoadResult:
    """Run ``concurrency`` workers for ``warmup + duration`` seconds.

    A call counts if it both starts and finishes inside the measured window;
    its latency is kept for the percentiles. Errors are counted, not raised.
    """
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    clock = time.perf_counter
    start = clock() + warmup
    end = start + duration

    async def worker() -> None:
        nonlocal errors, first_error
        while True:
            t0 = clock()
            if t0 >= end:
                return
            try:
                await call()
            except Exception as exc:  # a benchmark reports failures, it does not stop on them
                errors += 1
                if first_error is None:
                    first_error = f"{type(exc).__name__}: {exc}"
                await anyio.sleep(0.001)
                continue
            t1 = clock()
            if t0 >= start and t1 <= end:
                latencies.append(t1 - t0)

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)

    latencies.sort()
    return LoadResult(
        system=system,
        workload=workload,
        concurrency=concurrency,
        duration_s=duration,
        requests=len(latencies),
        errors=errors,
        req_s=len(latencies) / duration,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        first_error=first_error,
    )


def emit(line: str) -> None:
    """Print one line on stdout and flush it at once (the driver reads it)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
