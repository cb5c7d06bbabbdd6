"""NATS pub/sub throughput: micro's NatsBroker (asyncio and Trio) against nats-py.

    python benchmarks/nats_bench.py [--messages 100000] [--size 100] [--rounds 3]
                                    [--publishers 256] [--url nats://127.0.0.1:4222]

One nats-server (started here on a free loopback port, unless ``--url`` names
one) serves every system in the same run. Each measurement runs in a fresh
Python process that subscribes to a subject, publishes ``--messages``
messages of ``--size`` bytes to it on the same connection, and stops the
clock when the last one has been delivered: messages/s published *and*
delivered. Systems:

- ``nats-py``: the asyncio-only reference client: ``await nc.publish()`` in a
  loop, then ``flush()``; a subscription callback counts deliveries.
- ``nats-py-confirmed``: nats-py with the broker's guarantee: ``--publishers``
  concurrent tasks each ``publish()`` a message with a ``Micro-Id`` header
  and ``flush()`` (one PING/PONG round trip per message).
- ``micro-asyncio`` / ``micro-trio``: ``NatsBroker.publish`` (each call returns
  only once the server has confirmed the message) from ``--publishers``
  concurrent tasks, so confirmations batch; ``NatsBroker.subscribe`` with a
  handler that counts. Every message carries its ``Micro-Id`` header.
- ``micro-asyncio-unconfirmed`` / ``micro-trio-unconfirmed``: the broker with
  ``confirm=False`` (``nats://...?confirm=false``), publishing from one task
  as nats-py does: ``publish`` returns once the message is queued on the
  connection. The like-for-like comparison with ``nats-py``.
- ``micro-client-asyncio`` / ``micro-client-trio``: ``NatsClient.publish``
  without confirmation from one task, like nats-py: the cost of micro's
  client alone, without the broker's confirmation and headers.
- ``micro-asyncio-serial``: ``NatsBroker.publish`` from one task, one
  confirmation round trip per message: what confirmation costs unbatched
  (run on a tenth of the messages).

Prints a table of medians: messages/s and its ratio to nats-py (targets for
the broker: >= 0.8x unconfirmed, >= 0.6x confirmed, as confirmation costs a
wake-up per publishing task), and the measuring process's CPU time per message,
which other load on a shared machine disturbs far less than wall time.
Needs ``pip install nats-py`` (benchmark only; micro itself does not use it)
and the ``nats-server`` binary.
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
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SYSTEMS = [
    "nats-py",
    "nats-py-confirmed",
    "micro-asyncio",
    "micro-trio",
    "micro-asyncio-unconfirmed",
    "micro-trio-unconfirmed",
    "micro-client-asyncio",
    "micro-client-trio",
    "micro-asyncio-serial",
]
BROKERS = {"micro-asyncio", "micro-trio", "micro-asyncio-unconfirmed", "micro-trio-unconfirmed"}


# -- the measured workloads (run in a child process) ----------------------------


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) since ``start``."""
    wall, cpu = clock()
    return wall - start[0], cpu - start[1]


async def run_nats_py(url: str, count: int, size: int, publishers: int) -> tuple[float, float]:
    import asyncio

    import nats  # type: ignore[import-not-found]

    subject = f"bench.{uuid.uuid4().hex}"
    payload = b"x" * size
    done = asyncio.Event()
    received = 0

    async def on_message(msg: Any) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    await nc.subscribe(subject, cb=on_message, pending_msgs_limit=count + 1)
    await nc.flush()
    start = clock()
    for _ in range(count):
        await nc.publish(subject, payload)
    await nc.flush()
    await done.wait()
    elapsed = since(start)
    await nc.close()
    return elapsed


async def run_nats_py_confirmed(
    url: str, count: int, size: int, publishers: int
) -> tuple[float, float]:
    import asyncio

    import nats

    subject = f"bench.{uuid.uuid4().hex}"
    payload = b"x" * size
    done = asyncio.Event()
    received = 0

    async def on_message(msg: Any) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    async def publisher(n: int) -> None:
        for _ in range(n):
            await nc.publish(subject, payload, headers={"Micro-Id": uuid.uuid4().hex})
            await nc.flush()

    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    await nc.subscribe(subject, cb=on_message, pending_msgs_limit=count + 1)
    await nc.flush()
    start = clock()
    share, extra = divmod(count, publishers)
    await asyncio.gather(*(publisher(share + (i < extra)) for i in range(publishers)))
    await done.wait()
    elapsed = since(start)
    await nc.close()
    return elapsed


async def run_micro_broker(
    url: str, count: int, size: int, publishers: int, confirm: bool = True
) -> tuple[float, float]:
    import anyio

    from micro.broker import Message
    from micro.broker.nats import NatsBroker

    topic = f"bench.{uuid.uuid4().hex}"
    body = b"x" * size
    done = anyio.Event()
    received = 0

    async def handler(message: Message) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    async def publisher(n: int) -> None:
        for _ in range(n):
            await broker.publish(Message(topic, body))

    async with NatsBroker(url, confirm=confirm) as broker, anyio.create_task_group() as tg:
        await tg.start(broker.subscribe, topic, handler)
        start = clock()
        async with anyio.create_task_group() as pubs:
            share, extra = divmod(count, publishers)
            for i in range(publishers):
                pubs.start_soon(publisher, share + (i < extra))
        await done.wait()
        elapsed = since(start)
        tg.cancel_scope.cancel()
    return elapsed


async def run_micro_client(url: str, count: int, size: int, publishers: int) -> tuple[float, float]:
    import anyio

    from micro.nats import NatsClient

    subject = f"bench.{uuid.uuid4().hex}"
    payload = b"x" * size
    done = anyio.Event()

    async def consume() -> None:
        received = 0
        async for _ in sub:
            received += 1
            if received == count:
                done.set()
                return

    async with NatsClient(url) as nc, nc.subscribe(subject) as sub, anyio.create_task_group() as tg:
        tg.start_soon(consume)
        start = clock()
        for _ in range(count):
            await nc.publish(subject, payload)
        await nc.flush()
        await done.wait()
        elapsed = since(start)
    return elapsed


def child(system: str, url: str, count: int, size: int, publishers: int) -> None:
    if system.startswith("nats-py"):
        import asyncio

        work = run_nats_py_confirmed if system.endswith("confirmed") else run_nats_py
        elapsed = asyncio.run(work(url, count, size, publishers))
    else:
        import anyio

        backend = "trio" if "trio" in system else "asyncio"
        if system.startswith("micro-client"):
            elapsed = anyio.run(run_micro_client, url, count, size, publishers, backend=backend)
        else:
            confirm = not system.endswith("unconfirmed")
            if system.endswith(("serial", "unconfirmed")):
                publishers = 1
            elapsed = anyio.run(
                run_micro_broker, url, count, size, publishers, confirm, backend=backend
            )
    wall, cpu = elapsed
    print(json.dumps({"system": system, "messages": count, "seconds": wall, "cpu": cpu}))


# -- the driver --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("nats-server")
    if binary is None:
        sys.exit("nats-server not found (Debian package nats-server)")
    port, monitor = free_port(), free_port()
    process = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/healthz", timeout=1):
                return process, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("nats-server did not become ready")


def measure(system: str, url: str, count: int, size: int, publishers: int) -> tuple[float, float]:
    """(messages/s, client CPU microseconds per message) of one run in a fresh process."""
    if system.endswith("serial"):
        count = max(1, count // 10)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            system,
            "--url",
            url,
            "--messages",
            str(count),
            "--size",
            str(size),
            "--publishers",
            str(publishers),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{system} failed:\n{result.stderr[-2000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    messages = float(data["messages"])
    return messages / float(data["seconds"]), float(data["cpu"]) * 1e6 / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publishers", type=int, default=256)
    parser.add_argument("--url", help="use this server instead of starting one")
    parser.add_argument("--only", help="comma-separated systems (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.messages, args.size, args.publishers)
        return

    systems = args.only.split(",") if args.only else SYSTEMS
    load_before = f"{os.getloadavg()[0]:.2f}"
    with tempfile.TemporaryDirectory() as workdir:
        process = None
        url = args.url
        if url is None:
            process, url = start_server(workdir)
        try:
            rates: dict[str, list[float]] = {s: [] for s in systems}
            cpus: dict[str, list[float]] = {s: [] for s in systems}
            for round_ in range(args.rounds):
                for system in systems:
                    rate, cpu = measure(system, url, args.messages, args.size, args.publishers)
                    rates[system].append(rate)
                    cpus[system].append(cpu)
                    print(
                        f"round {round_ + 1}: {system:22} {rate:10,.0f} msg/s "
                        f"{cpu:6.1f} us CPU/msg",
                        file=sys.stderr,
                    )
        finally:
            if process is not None:
                process.terminate()
                process.wait()

    medians = {s: statistics.median(r) for s, r in rates.items()}
    cpu_medians = {s: statistics.median(c) for s, c in cpus.items()}
    reference = medians.get("nats-py")
    cpu_reference = cpu_medians.get("nats-py")
    print(f"\n{args.messages:,} messages of {args.size} bytes, {args.rounds} rounds, medians")
    print(f"(load average before: {load_before}, after: {os.getloadavg()[0]:.2f})")
    print(f"{'system':24} {'msg/s':>12} {'vs nats-py':>11} {'CPU us/msg':>11} {'vs nats-py':>11}")
    for system, rate in medians.items():
        ratio = f"{rate / reference:.2f}x" if reference else "-"
        cpu = cpu_medians[system]
        # CPU ratio as a speed: nats-py's CPU per message over this system's.
        cpu_ratio = f"{cpu_reference / cpu:.2f}x" if cpu_reference else "-"
        print(f"{system:24} {rate:12,.0f} {ratio:>11} {cpu:11.1f} {cpu_ratio:>11}")
    if reference:
        for system in sorted(BROKERS & set(medians)):
            target = 0.8 if system.endswith("unconfirmed") else 0.6
            ratio = medians[system] / reference
            verdict = "meets" if ratio >= target else "MISSES"
            print(f"{system} {verdict} the {target}x target ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
