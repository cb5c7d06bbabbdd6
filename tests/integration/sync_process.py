"""A node taking locks or leading, in its own process, for the multi-process sync tests.

    python -m tests.integration.sync_process URL MODE NAME [--backend trio] [--ttl S]
        [--id ID] [--rounds M] [--counter KEY]

Modes (each prints ``ready`` once its Sync is open):

- ``count``: waits for a line on stdin, then ``--rounds`` times takes lock NAME
  and, under it, reads the JSON counter at etcd key ``--counter``, adds one
  and appends the lock's fencing token, with a pause between read and write
  (a lost update if two held the lock at once); prints ``done``;
- ``hold``: takes lock NAME, prints ``held <token>``, holds it until killed;
- ``lead``: campaigns for NAME as ``--id``, prints ``leading <token>``, leads
  until killed (or prints ``lost <reason>`` and exits 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio

from micro.etcd import EtcdClient
from micro.sync import LeadershipLost, Sync, from_url


async def count(sync: Sync, args: argparse.Namespace) -> None:
    await anyio.to_thread.run_sync(sys.stdin.readline)
    key = args.counter.encode()
    async with EtcdClient(args.url) as etcd:
        for _ in range(args.rounds):
            async with sync.lock(args.name, ttl=args.ttl, wait=60) as lock:
                kv = await etcd.get(key)
                state: dict[str, Any] = json.loads(kv.value) if kv else {"count": 0, "tokens": []}
                await anyio.sleep(0.002)
                state["count"] += 1
                state["tokens"].append(lock.token)
                await etcd.put(key, json.dumps(state).encode())
    print("done", flush=True)


async def hold(sync: Sync, args: argparse.Namespace) -> None:
    async with sync.lock(args.name, ttl=args.ttl) as lock:
        print(f"held {lock.token}", flush=True)
        await anyio.sleep_forever()


async def lead(sync: Sync, args: argparse.Namespace) -> None:
    try:
        async with sync.leader(args.name, ttl=args.ttl, id=args.id) as leadership:
            print(f"leading {leadership.token}", flush=True)
            await anyio.sleep_forever()
    except LeadershipLost as exc:
        print(f"lost {exc.reason}", flush=True)
        sys.exit(1)


MODES = {"count": count, "hold": hold, "lead": lead}


async def run(args: argparse.Namespace) -> None:
    async with from_url(args.url.replace("http://", "etcd://"), id=args.id) as sync:
        print("ready", flush=True)
        await MODES[args.mode](sync, args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("name")
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--id", default=None)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--counter", default="")
    args = parser.parse_args()
    anyio.run(run, args, backend=args.backend)


if __name__ == "__main__":
    main()
