"""Pub/sub throughput: ~100-byte messages published and delivered, per broker.

    python benchmarks/broker.py [--messages 20000] [--publishers 16] [--backend trio]

- **memory**: publisher and subscriber services in one process.
- **http**: the subscriber service in its own process (pinned to another core
  when ``taskset`` exists), found through the registry given by ``--registry``
  (default ``mdns``, kept on loopback).

The figure is messages per second from the first publish until the subscriber
has received the last one. NATS has its own benchmark (``nats_bench.py``), which
compares micro's NATS broker with nats-py against the same server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid

import anyio
import anyio.abc

import micro
from micro.broker import MemoryBroker

os.environ.setdefault("MICRO_MDNS_INTERFACES", "127.0.0.1")
# Benchmark services keep their default store in memory, not in the user's data directory.
os.environ.setdefault("MICRO_STORE", "memory")

PAYLOAD = {"data": "x" * 80}


async def publish_all(service: micro.Service, topic: str, count: int, publishers: int) -> None:
    per = count // publishers

    async def publisher() -> None:
        for _ in range(per):
            await service.publish(topic, PAYLOAD)

    async with anyio.create_task_group() as tg:
        for _ in range(publishers):
            tg.start_soon(publisher)


async def memory_rate(count: int, publishers: int) -> float:
    broker = MemoryBroker()
    received = 0
    done = anyio.Event()
    sub = micro.Service("bench-sub", address="127.0.0.1:0", registry="memory", broker=broker)

    @sub.subscriber("bench")
    async def handle(event: dict[str, str]) -> None:
        nonlocal received
        received += 1
        if received == count:
            done.set()

    pub = micro.Service("bench-pub", address="127.0.0.1:0", registry="memory", broker=broker)
    async with sub.running(), pub.running():
        start = time.perf_counter()
        await publish_all(pub, "bench", count, publishers)
        await done.wait()
        return count / (time.perf_counter() - start)


async def http_rate(count: int, publishers: int, registry: str) -> float:
    topic = f"bench-{uuid.uuid4().hex[:6]}"
    argv = [
        sys.executable,
        __file__,
        "--subscriber",
        topic,
        "--messages",
        str(count),
        "--registry",
        registry,
    ]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", "0", *argv]
    process = await anyio.open_process(argv, stderr=None)
    assert process.stdout is not None
    try:
        buffer = b""
        with anyio.fail_after(30):
            while b"ready" not in buffer:
                buffer += await process.stdout.receive()
        pub = micro.Service("bench-pub", address="127.0.0.1:0", registry=registry, broker="http")
        async with pub.running():
            with anyio.fail_after(30):  # until the subscriber is known
                while True:
                    try:
                        await pub.client._lookup(f"micro.topic.{topic}")
                        break
                    except micro.MicroError:
                        await anyio.sleep(0.01)
            start = time.perf_counter()
            await publish_all(pub, topic, count, publishers)
            with anyio.fail_after(120):
                while b"done" not in buffer:
                    buffer += await process.stdout.receive()
            return count / (time.perf_counter() - start)
    finally:
        process.terminate()
        await process.wait()


def run_subscriber(topic: str, count: int, registry: str, backend: str) -> None:
    received = 0
    service = micro.Service("bench-sub", address="127.0.0.1:0", registry=registry, broker="http")

    @service.subscriber(topic)
    async def handle(event: dict[str, str]) -> None:
        nonlocal received
        received += 1
        if received == count:
            print("done", flush=True)

    @service.after_start
    async def ready() -> None:
        print("ready", flush=True)

    anyio.run(service.serve, backend=backend)


async def main(args: argparse.Namespace) -> None:
    count = args.messages - args.messages % args.publishers
    mem = await memory_rate(count, args.publishers)
    http = await http_rate(count, args.publishers, args.registry)
    print(f"| broker ({args.backend}) | messages/s published and delivered |")
    print("|---|---|")
    print(f"| memory | {mem:,.0f} |")
    print(f"| http ({args.registry}) | {http:,.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--publishers", type=int, default=16)
    parser.add_argument("--registry", default="mdns")
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--subscriber", metavar="TOPIC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        run_subscriber(args.subscriber, args.messages, args.registry, args.backend)
    else:
        anyio.run(main, args, backend=args.backend)
