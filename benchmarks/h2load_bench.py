"""Drive ``h2load`` (nghttp2-client) at a server with a gRPC-framed echo request."""

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from procs import BenchError, pinned, run_child

#: streams in flight on the one connection: one at a time, and 64
STREAMS: tuple[int, ...] = (1, 64)
HEADERS = ("content-type: application/grpc", "te: trailers")

_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(r"requests: (\d+) total.*?(\d+) succeeded, (\d+) failed, (\d+) errored")


@dataclass
class H2loadResult:
    requests: int
    elapsed_s: float
    req_s: float
    succeeded: int
    failed: int
    errored: int


def available() -> bool:
    return shutil.which("h2load") is not None


def parse(output: str) -> H2loadResult:
    """Read the ``finished in ..., N req/s`` and ``requests:`` lines of h2load's report."""
    finished = _FINISHED.search(output)
    requests = _REQUESTS.search(output)
    if finished is None or requests is None:
        raise BenchError(f"cannot parse h2load output:\n{output[-2000:]}")
    elapsed = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    total, ok, failed, errored = (int(g) for g in requests.groups())
    return H2loadResult(total, elapsed, float(finished.group(3)), ok, failed, errored)


def h2load(
    port: int, path: str, body: Path, requests: int, streams: int, core: int | None
) -> H2loadResult:
    """``h2load -n requests -c 1 -m streams`` POSTing ``body`` to ``path``."""
    cmd = ["h2load", "-n", str(requests), "-c", "1", "-m", str(streams), "-t", "1"]
    cmd += ["-d", str(body)]
    for header in HEADERS:
        cmd += ["-H", header]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    result = parse(run_child(pinned(cmd, core), timeout=120))
    if result.succeeded < result.requests:
        raise BenchError(
            f"h2load: {result.failed} failed, {result.errored} errored of {result.requests}"
        )
    return result


def measure(
    port: int,
    path: str,
    body: Path,
    streams: int,
    warmup: float,
    duration: float,
    core: int | None,
) -> float:
    """Warm up for about ``warmup`` seconds, size ``-n`` from that rate, return req/s."""
    probe = h2load(port, path, body, 500, streams, core)
    rate = probe.req_s
    if warmup > probe.elapsed_s:
        more = max(500, int(rate * (warmup - probe.elapsed_s)))
        rate = h2load(port, path, body, more, streams, core).req_s
    return h2load(port, path, body, max(1000, int(rate * duration)), streams, core).req_s
