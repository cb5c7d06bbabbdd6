"""Discovery figures: time to the first call by name, and the cost of selection.

    python benchmarks/discovery.py --etcd http://127.0.0.1:2379 [--mdns] [--rounds 5]

1. **Start to first call**: a node process is started; this process calls it
   by name through the registry until a call succeeds. Reported: the time from
   the node's "ready" line (listener bound, registered) to the first successful
   call, and from spawning the process, for each registry (etcd, mdns).
2. **Selection overhead**: unary calls/s from 16 callers through the
   registry cache and selector to 3 nodes, against the same calls to one
   node by address (no lookup), in the same run.

mDNS runs only on loopback here (``MICRO_MDNS_INTERFACES=127.0.0.1``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import anyio
import anyio.abc

import micro
from micro.registry import from_url

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MICRO_MDNS_INTERFACES", "127.0.0.1")
# Benchmark services keep their default store in memory, not in the user's data directory.
os.environ.setdefault("MICRO_STORE", "memory")


async def _spawn(name: str, node_id: str, registry: str) -> tuple[anyio.abc.Process, float]:
    """Start a node process; return it and the time its "ready" line arrived."""
    process = await anyio.open_process(
        [sys.executable, "-m", "tests.integration.node_process", name, node_id, registry],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=None,
    )
    assert process.stdout is not None
    buffer = b""
    with anyio.fail_after(30):
        while b"ready " not in buffer:
            buffer += await process.stdout.receive()
    return process, time.perf_counter()


async def _stop(process: anyio.abc.Process) -> None:
    process.terminate()
    with anyio.move_on_after(10):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


async def first_call(registry_url: str) -> tuple[float, float]:
    """(ready -> first call, spawn -> first call) in seconds."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    async with micro.Client(registry=from_url(registry_url), retries=0) as client:
        spawned = time.perf_counter()
        process, ready = await _spawn(name, "n0", registry_url)
        try:
            with anyio.fail_after(30):
                while True:
                    try:
                        await client.call(name, "Node.Whoami", {}, timeout=2)
                        break
                    except micro.MicroError:
                        # Not known yet: the registry watch will bring it.
                        await anyio.sleep(0.001)
            done = time.perf_counter()
        finally:
            await _stop(process)
    return done - ready, done - spawned


async def throughput(registry_url: str, duration: float) -> tuple[float, float]:
    """(calls/s through discovery to 3 nodes, calls/s to one node by address)."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    procs = [await _spawn(name, f"n{i}", registry_url) for i in range(3)]
    try:
        async with micro.Client(registry=from_url(registry_url)) as client:
            with anyio.fail_after(30):
                while True:
                    try:
                        records = await client._lookup(name)
                        nodes = {n.address for r in records for n in r.nodes}
                        if len(nodes) == 3:
                            break
                    except micro.MicroError:
                        pass
                    await anyio.sleep(0.05)
            address = sorted(nodes)[0]
            by_name = await _rate(lambda: client.call(name, "Node.Whoami", {}), duration)
            direct = await _rate(
                lambda: client.call(name, "Node.Whoami", {}, address=address), duration
            )
    finally:
        for process, _ in procs:
            await _stop(process)
    return by_name, direct


async def _rate(call: object, duration: float, callers: int = 16) -> float:
    count = 0
    end = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < end:
            await call()  # type: ignore[operator]
            count += 1

    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(worker)
    return count / duration


async def main(args: argparse.Namespace) -> None:
    registries = []
    if args.etcd:
        registries.append(("etcd", args.etcd.replace("http://", "etcd://")))
    if args.mdns:
        registries.append(("mdns", "mdns"))
    print("| registry | ready -> first call, ms (median) | spawn -> first call, ms (median) |")
    print("|---|---|---|")
    for label, url in registries:
        samples = [await first_call(url) for _ in range(args.rounds)]
        ready = statistics.median(s[0] for s in samples) * 1000
        spawn = statistics.median(s[1] for s in samples) * 1000
        print(f"| {label} | {ready:,.1f} | {spawn:,.0f} |")
    print()
    print("| registry | by name, 3 nodes, calls/s | one node by address, calls/s | ratio |")
    print("|---|---|---|---|")
    for label, url in registries:
        by_name, direct = await throughput(url, args.duration)
        print(f"| {label} | {by_name:,.0f} | {direct:,.0f} | {by_name / direct:.2f}x |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etcd", help="etcd client URL, e.g. http://127.0.0.1:2379")
    parser.add_argument("--mdns", action="store_true", help="also measure mDNS (loopback)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    args = parser.parse_args()
    anyio.run(main, args, backend=args.backend)
