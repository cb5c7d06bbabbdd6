"""Load generation: closed-loop unary workers, and a window-bounded bidirectional stream.

Both keep only what lands in the measured window (after a warm-up).
"""

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
    payload_bytes: int = 0
    """Payload of each request (the echo returns as much again)."""

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
    payload_bytes: int = 0,
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
        payload_bytes=payload_bytes,
    )


class StreamMeter:
    """Pace and count one bidirectional echo stream.

    The sender calls :meth:`sending` and :meth:`before_send` before each message;
    the receiver calls :meth:`received_one` after each echo. At most ``window``
    messages are in flight: a sender that gets that far ahead sleeps until the
    receiver has taken half of them, so the pipe stays full without one wake-up
    per message. Echoes received inside the measured window are counted.
    """

    def __init__(self, window: int, warmup: float, duration: float) -> None:
        if window < 2:
            raise ValueError("window must be at least 2")
        self.window = window
        self.duration = duration
        self.sent = 0
        self.received = 0
        self.counted = 0
        self._clock = time.perf_counter
        self.start = self._clock() + warmup
        self.end = self.start + duration
        self._resume_at = window // 2  # in flight at or below this wakes the sender
        self._space: anyio.Event | None = None

    def sending(self) -> bool:
        """True while the sender should go on (until the measured window ends)."""
        return self._clock() < self.end

    async def before_send(self) -> None:
        """Wait while ``window`` messages are in flight, then count one more as sent."""
        if self.sent - self.received >= self.window:
            self._space = anyio.Event()
            await self._space.wait()
        self.sent += 1

    def received_one(self) -> None:
        self.received += 1
        if self.start <= self._clock() < self.end:
            self.counted += 1
        space = self._space
        if space is not None and self.sent - self.received <= self._resume_at:
            self._space = None
            space.set()

    def result(
        self, *, system: str, payload_bytes: int, first_error: str | None = None
    ) -> LoadResult:
        """msg/s in ``req_s``; per-message latency is not measured (``nan``)."""
        errors = 0 if first_error is None else 1
        if first_error is None and self.received != self.sent:
            errors = 1
            first_error = f"sent {self.sent} messages but {self.received} came back"
        return LoadResult(
            system=system,
            workload="stream",
            concurrency=self.window,
            duration_s=self.duration,
            requests=self.counted,
            errors=errors,
            req_s=self.counted / self.duration,
            p50_ms=math.nan,
            p99_ms=math.nan,
            first_error=first_error,
            payload_bytes=payload_bytes,
        )


def emit(line: str) -> None:
    """Print one line on stdout and flush it at once (the driver reads it)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
