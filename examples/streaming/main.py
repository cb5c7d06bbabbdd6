"""Streaming: the four gRPC call kinds as plain Python, served and called.

    python examples/streaming/main.py serve                 # asyncio, port 8081
    python examples/streaming/main.py serve --backend trio  # the same on Trio
    python examples/streaming/main.py call                  # call every endpoint

A server stream is also open to plain HTTP callers, one JSON line per message
(or Server-Sent Events with ``-H 'Accept: text/event-stream'``):

    curl -N -H 'Content-Type: application/json' -d '{"value": 3}' \\
         http://localhost:8081/Numbers/Count
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

import micro


@dataclass
class Num:
    value: int


class Numbers:
    async def count(self, req: Num) -> AsyncIterator[Num]:
        """Server stream: 0, 1, ..., value - 1."""
        for i in range(req.value):
            yield Num(i)

    async def total(self, reqs: AsyncIterator[Num]) -> Num:
        """Client stream: the sum of everything sent."""
        return Num(sum([r.value async for r in reqs]))

    async def double(self, reqs: AsyncIterator[Num]) -> AsyncIterator[Num]:
        """Bidirectional: each number back, doubled, as it comes."""
        async for r in reqs:
            yield Num(r.value * 2)

    async def chat(self, stream: micro.Stream[Num, Num]) -> None:
        """Bidirectional with an explicit stream: speak first, then answer each twice."""
        await stream.send(Num(-1))
        async for r in stream:
            await stream.send(Num(r.value + 1))
            await stream.send(Num(r.value + 2))


async def call(address: str) -> None:
    """Call every endpoint of the service at ``address`` and print what comes back."""
    async with micro.Client(registry="memory") as client:
        opts = {"address": address, "timeout": 10}
        async with client.stream("numbers", "Numbers.Count", Num(3), Num, **opts) as s:
            print("count:", [n.value async for n in s])

        async with client.stream("numbers", "Numbers.Total", response_type=Num, **opts) as s:
            for i in (1, 2, 3, 4):
                await s.send(Num(i))
            await s.close_send()
            print("total:", (await s.receive()).value)

        async with client.stream("numbers", "Numbers.Double", response_type=Num, **opts) as s:
            doubled = []
            for i in (1, 2, 3):
                await s.send(Num(i))
                doubled.append((await s.receive()).value)  # one answer per message, in step
            await s.close_send()
            print("double:", doubled)

        async with client.stream("numbers", "Numbers.Chat", response_type=Num, **opts) as s:
            first = (await s.receive()).value
            await s.send(Num(10))
            await s.close_send()
            print("chat:", [first] + [n.value async for n in s])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["serve", "call"])
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--address", help="host:port to serve on or call (default :8081)")
    # The service reads its own --micro-* flags (--micro-registry=memory, ...).
    args, rest = parser.parse_known_args()
    if unknown := [arg for arg in rest if not arg.startswith("--micro-")]:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    # Port 8081 unless --address, --micro-address or MICRO_ADDRESS says otherwise.
    os.environ.setdefault("MICRO_ADDRESS", ":8081")
    if args.mode == "call":
        address = args.address or os.environ["MICRO_ADDRESS"]
        address = "127.0.0.1" + address if address.startswith(":") else address
        anyio.run(call, address, backend=args.backend)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    service = micro.Service("numbers", address=args.address)
    service.handle(Numbers())
    anyio.run(service.serve, backend=args.backend)


if __name__ == "__main__":
    main()
