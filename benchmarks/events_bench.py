"""Event stream throughput: events/s published and consumed with ack, per backend, and
JetStream through micro against nats-py's JetStream client.

    python benchmarks/events_bench.py [--events 20000] [--size 100] [--rounds 3]
                                      [--publishers 64] [--systems a,b,...]

A redis-server and a nats-server with JetStream (started here on free loopback
ports, in a temp dir) serve every system in the same run. Each measurement runs
in a fresh Python process on a new topic: ``--publishers`` concurrent tasks
publish ``--events`` events of ``--size`` bytes, each ``publish`` returning once
the event is stored (the clock stops when the last has returned): *published/s*.
Then one consumer of a new group reads them all from the start and
acknowledges each: *consumed/s*. Systems:

- ``memory``, ``file`` (SQLite in the temp dir, fsync per commit), ``redis``,
  ``nats``: micro's event streams, under asyncio and under Trio
  (``file-trio``, ...);
- ``nats-py``: nats-py's JetStream client on the same server: ``js.publish``
  (which waits for the server's ack) from the same number of tasks; a durable
  pull subscription fetching 32 at a time, ``msg.ack()`` each. The reference
  for ``nats`` (aim: >= 0.8x).

Prints medians, and for ``nats`` systems the ratio to ``nats-py``. Needs
``redis-server``, ``nats-server`` and ``pip install nats-py`` (benchmark only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["memory", "file", "redis", "nats"]
SYSTEMS = [*BACKENDS, *(f"{b}-trio" for b in BACKENDS), "nats-py"]
BATCH = 32


# -- the measured workloads (run in a child process) ----------------------------


async def run_micro(url: str, count: int, size: int, publishers: int) -> tuple[float, float]:
    import anyio

    from micro.events import from_url

    topic = f"bench.{uuid.uuid4().hex}"
    payload = b"x" * size

    async def publisher(n: int) -> None:
        for _ in range(n):
            await stream.publish(topic, payload)

    async with from_url(url) as stream:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            share, extra = divmod(count, publishers)
            for i in range(publishers):
                tg.start_soon(publisher, share + (i < extra))
        published = time.perf_counter() - start
        start = time.perf_counter()
        seen = 0
        async with stream.consume(topic, group="bench", offset="start") as events:
            async for event in events:
                await event.ack()
                seen += 1
                if seen == count:
                    break
            consumed = time.perf_counter() - start  # the last acknowledged, as for nats-py
    return published, consumed


async def run_nats_py(url: str, count: int, size: int, publishers: int) -> tuple[float, float]:
    import asyncio

    import nats  # type: ignore[import-not-found]

    name = f"BENCH-{uuid.uuid4().hex}"
    subject = f"bench.{name}"
    payload = b"x" * size
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[subject])

    async def publisher(n: int) -> None:
        for _ in range(n):
            await js.publish(subject, payload)

    start = time.perf_counter()
    share, extra = divmod(count, publishers)
    await asyncio.gather(*(publisher(share + (i < extra)) for i in range(publishers)))
    published = time.perf_counter() - start
    start = time.perf_counter()
    sub = await js.pull_subscribe(subject, durable="bench", stream=name)
    seen = 0
    while seen < count:
        for msg in await sub.fetch(BATCH, timeout=5):
            await msg.ack()
            seen += 1
    consumed = time.perf_counter() - start
    await js.delete_stream(name)
    await nc.close()
    return published, consumed


def child(system: str, urls: dict[str, str], count: int, size: int, publishers: int) -> None:
    if system == "nats-py":
        import asyncio

        result = asyncio.run(run_nats_py(urls["nats"], count, size, publishers))
    else:
        import anyio

        backend, _, loop = system.partition("-")
        result = anyio.run(
            run_micro, urls[backend], count, size, publishers, backend=loop or "asyncio"
        )
    print(json.dumps({"published": result[0], "consumed": result[1]}))


# -- orchestration ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"no server on port {port}")


def start_servers(workdir: str) -> tuple[list[subprocess.Popen[bytes]], dict[str, str]]:
    binaries = {}
    for name in ("redis-server", "nats-server"):
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
        if found is None:
            raise SystemExit(f"{name} not found")
        binaries[name] = found
    redis_port, nats_port = free_port(), free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    redis = [binaries["redis-server"], "--bind", "127.0.0.1", "--port", str(redis_port)]
    redis += ["--dir", workdir, "--save", "", "--appendonly", "no"]
    nats = [binaries["nats-server"], "-a", "127.0.0.1", "-p", str(nats_port)]
    nats += ["-js", "-sd", os.path.join(workdir, "js")]
    processes = [subprocess.Popen(redis, **quiet), subprocess.Popen(nats, **quiet)]  # type: ignore[call-overload]
    wait_port(redis_port)
    wait_port(nats_port)
    urls = {
        "memory": "memory",
        "file": f"file://{os.path.join(workdir, 'events.db')}",
        "redis": f"redis://127.0.0.1:{redis_port}/0",
        "nats": f"nats://127.0.0.1:{nats_port}",
    }
    return processes, urls


def measure(
    system: str, urls: dict[str, str], count: int, size: int, publishers: int
) -> tuple[float, float]:
    result = subprocess.run(
        [
            *(sys.executable, __file__, "--child", system, "--urls", json.dumps(urls)),
            *("--events", str(count), "--size", str(size), "--publishers", str(publishers)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{system} failed:\n{result.stderr}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return count / data["published"], count / data["consumed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publishers", type=int, default=64)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, json.loads(args.urls), args.events, args.size, args.publishers)
        return
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}: use {SYSTEMS}")
    with tempfile.TemporaryDirectory() as workdir:
        processes, urls = start_servers(workdir)
        try:
            runs: dict[str, list[tuple[float, float]]] = {s: [] for s in systems}
            for round_ in range(args.rounds):
                for system in systems:
                    rate = measure(system, urls, args.events, args.size, args.publishers)
                    runs[system].append(rate)
                    print(
                        f"round {round_ + 1} {system:12} published {rate[0]:9,.0f}/s "
                        f"consumed {rate[1]:9,.0f}/s",
                        file=sys.stderr,
                    )
        finally:
            for process in processes:
                process.terminate()
                process.wait()
    medians = {
        s: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
        for s, rs in runs.items()
    }
    print(f"\n{args.events:,} events of {args.size} bytes, {args.publishers} publishers,")
    print(f"{args.rounds} rounds, medians (load average after: {os.getloadavg()[0]:.2f})")
    header = f"{'published/s':>12} {'vs nats-py':>11} {'consumed/s':>12} {'vs nats-py':>11}"
    print(f"{'system':12} {header}")
    reference = medians.get("nats-py")
    for system, (published, consumed) in medians.items():
        vs_pub = vs_con = ""
        if reference is not None and system.startswith("nats") and system != "nats-py":
            vs_pub = f"{published / reference[0]:.2f}x"
            vs_con = f"{consumed / reference[1]:.2f}x"
        print(f"{system:12} {published:12,.0f} {vs_pub:>11} {consumed:12,.0f} {vs_con:>11}")


if __name__ == "__main__":
    main()
