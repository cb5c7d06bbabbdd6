"""A queue-group member in its own process, for the cross-process NATS test.

    python -m tests.integration.nats_member URL SUBJECT QUEUE BACKEND

Prints ``ready`` once subscribed, then the id of each message it handles, one
per line (flushed), until killed.
"""

from __future__ import annotations

import sys
from functools import partial

import anyio

from micro.broker import Message
from micro.broker.nats import NatsBroker


async def main(url: str, subject: str, queue: str) -> None:
    async def handle(message: Message) -> None:
        print(message.id, flush=True)

    async with NatsBroker(url) as broker, anyio.create_task_group() as tg:
        await tg.start(partial(broker.subscribe, subject, handle, queue=queue))
        print("ready", flush=True)


if __name__ == "__main__":
    url, subject, queue, backend = sys.argv[1:5]
    anyio.run(main, url, subject, queue, backend=backend)
