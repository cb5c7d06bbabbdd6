"""A publisher in its own process, for the cross-process NATS test.

    python -m tests.integration.nats_publisher URL SUBJECT BACKEND

Reads commands from stdin: ``publish FIRST LAST`` publishes messages with ids
``m<FIRST>`` .. ``m<LAST - 1>`` through NatsBroker (each confirmed by the
server) and prints ``published FIRST LAST``. Exits at the end of input.
"""

from __future__ import annotations

import sys

import anyio
import anyio.to_thread

from micro.broker import Message
from micro.broker.nats import NatsBroker


async def main(url: str, subject: str) -> None:
    async with NatsBroker(url) as broker:
        print("ready", flush=True)
        while line := await anyio.to_thread.run_sync(sys.stdin.readline):
            command, first, last = line.split()
            assert command == "publish"
            for i in range(int(first), int(last)):
                await broker.publish(Message(subject, b"payload", id=f"m{i}"))
            print(f"published {first} {last}", flush=True)


if __name__ == "__main__":
    url, subject, backend = sys.argv[1:4]
    anyio.run(main, url, subject, backend=backend)
