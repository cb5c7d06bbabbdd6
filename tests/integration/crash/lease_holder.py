"""A node holding a lock or leading in a loop, logging each body iteration, for the pause tests.

    python -m tests.integration.crash.lease_holder URL MODE NAME LOG [--backend trio]
        [--ttl S] [--id ID] [--interval S]

MODE is ``lead`` (campaign for NAME as ``--id``) or ``lock`` (take lock NAME,
waiting as long as it takes). The node prints ``ready`` once its Sync is open,
then holds NAME over and over: after losing it, it queues again. Every line
it appends to LOG (flushed at once, so a test can read it while the node is
stopped or after it is killed) starts with ``time.monotonic()``, which is the
system-wide CLOCK_MONOTONIC on Linux, so lines of different processes compare:

- ``<t> enter <token>``: the body started;
- ``<t> iter <token> <held>``: one iteration of the body, ``held`` 1 if it
  believed it held NAME (``lock.held``) when it ran, else 0;
- ``<t> lost <token> <reason>``: the hold was lost (LockLost or LeadershipLost).
"""

from __future__ import annotations

import argparse
import time
from typing import TextIO

import anyio

from micro.sync import Lock, LockLost, Sync, from_url


def append(log: TextIO, at: float, *fields: object) -> None:
    log.write(" ".join([f"{at:.6f}", *map(str, fields)]) + "\n")
    log.flush()


async def body(lock: Lock, log: TextIO, interval: float) -> None:
    append(log, time.monotonic(), "enter", lock.token)
    while True:
        # The time first: a line says the node believed it held NAME at or
        # after its time, even if a pause struck between the two.
        at = time.monotonic()
        append(log, at, "iter", lock.token, int(lock.held))
        await anyio.sleep(interval)


async def hold(sync: Sync, args: argparse.Namespace, log: TextIO) -> None:
    while True:
        token = 0
        try:
            if args.mode == "lead":
                async with sync.leader(args.name, ttl=args.ttl, id=args.id) as leadership:
                    token = leadership.token
                    await body(leadership, log, args.interval)
            else:
                async with sync.lock(args.name, ttl=args.ttl) as lock:
                    token = lock.token
                    await body(lock, log, args.interval)
        except LockLost as exc:
            append(log, time.monotonic(), "lost", token, exc.reason)


async def run(args: argparse.Namespace, log: TextIO) -> None:
    async with from_url(args.url.replace("http://", "etcd://"), id=args.id) as sync:
        print("ready", flush=True)
        await hold(sync, args, log)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mode", choices=["lead", "lock"])
    parser.add_argument("name")
    parser.add_argument("log")
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--id", default=None)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    with open(args.log, "a", encoding="utf-8") as log:
        anyio.run(run, args, log, backend=args.backend)


if __name__ == "__main__":
    main()
