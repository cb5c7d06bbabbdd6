"""A queue-group member in its own process, for cross-process pub/sub tests.

    python -m tests.integration.broker_member NAME REGISTRY BROKER TOPIC QUEUE

Prints ``ready`` once subscribed, then ``got <n>`` for each message's ``n``.
"""

from __future__ import annotations

import sys

import anyio

import micro


def main() -> None:
    name, registry, broker, topic, queue = sys.argv[1:6]
    service = micro.Service(name, address="127.0.0.1:0", registry=registry, broker=broker)

    @service.subscriber(topic, queue=queue)
    async def handle(event: dict[str, int]) -> None:
        print(f"got {event['n']}", flush=True)

    @service.after_start
    async def ready() -> None:
        print("ready", flush=True)

    anyio.run(service.serve)


if __name__ == "__main__":
    main()
