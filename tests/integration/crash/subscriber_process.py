"""A subscriber in its own process, for the broker's crash tests.

    python -m tests.integration.crash.subscriber_process \
        NAME REGISTRY TOPIC QUEUE DELAY FILE BACKEND

Subscribes to TOPIC (in queue group QUEUE, or none when it is ``-``) over the
HTTP broker; its handler works for DELAY seconds, then appends the message's
``n`` to FILE, flushed and fsynced: the file holds every message handled.
Prints ``ready`` once subscribed.
"""

from __future__ import annotations

import os
import sys

import anyio

import micro


def main() -> None:
    name, registry, topic, queue, delay, path, backend = sys.argv[1:8]
    service = micro.Service(name, address="127.0.0.1:0", registry=registry, broker="http")
    log = open(path, "a")  # noqa: SIM115 - open for the process's life

    @service.subscriber(topic, queue=None if queue == "-" else queue)
    async def handle(event: dict[str, int]) -> None:
        await anyio.sleep(float(delay))
        log.write(f"{event['n']}\n")
        log.flush()
        os.fsync(log.fileno())

    @service.after_start
    async def ready() -> None:
        print("ready", flush=True)

    anyio.run(service.serve, backend=backend)


if __name__ == "__main__":
    main()
