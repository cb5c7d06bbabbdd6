"""Locks and leadership across processes sharing one etcd: contention, SIGKILL, failover.

Each node is ``tests/integration/sync_process.py`` on the test's own async
backend. A node killed with SIGKILL releases nothing: its lease runs out in
etcd. It was renewed every third of the TTL, so the name is free no earlier
than two thirds of the TTL after the kill, and no later than the TTL (plus
etcd's expiry sweep, every 0.5 s).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import pytest

from micro.etcd import EtcdClient
from micro.sync import LeaderInfo
from micro.sync.etcd import EtcdSync
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
#: seconds past the TTL within which a dead holder's name must be free
SLACK = 1.5
#: seconds a node may take to start
START_TIMEOUT = 30


class Node:
    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self._buffer = b""

    async def line(self) -> str:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            try:
                self._buffer += await self.process.stdout.receive()
            except anyio.EndOfStream:
                raise AssertionError(f"the node exited ({await self.process.wait()})") from None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def expect(self, word: str, timeout: float = START_TIMEOUT) -> str:
        """The rest of the next line starting with ``word``."""
        with anyio.fail_after(timeout):
            while True:
                line = await self.line()
                if line.split(" ", 1)[0] == word:
                    return line.partition(" ")[2]


@asynccontextmanager
async def nodes(backend: str, url: str, *argvs: list[str]) -> AsyncIterator[list[Node]]:
    """Start a node per argv (each ready), and kill those still running on the way out."""
    started: list[Node] = []
    try:
        for argv in argvs:
            command = [sys.executable, "-m", "tests.integration.sync_process", url, *argv]
            process = await anyio.open_process(
                [*command, "--backend", backend],
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stderr=None,
            )
            started.append(Node(process))
        for node in started:
            await node.expect("ready")
        yield started
    finally:
        with anyio.CancelScope(shield=True):
            for node in started:
                if node.process.returncode is None:
                    node.process.kill()
                await node.process.wait()
                await node.process.aclose()


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


async def test_contending_processes_lose_no_increment(
    etcd_server: ServerProcess, anyio_backend: str
) -> None:
    processes, rounds = 3, 15
    name, counter = unique("counter-lock"), f"/test/sync/{unique('counter')}"
    argv = ["count", name, "--rounds", str(rounds), "--counter", counter, "--ttl", "5"]
    async with nodes(anyio_backend, etcd_server.url, *[argv] * processes) as started:
        for node in started:  # all at once
            assert node.process.stdin is not None
            await node.process.stdin.send(b"go\n")
        for node in started:
            await node.expect("done", timeout=60)
    async with EtcdClient(etcd_server.url) as etcd:
        kv = await etcd.get(counter.encode())
        await etcd.delete(counter.encode())
    assert kv is not None
    state = json.loads(kv.value)
    assert state["count"] == processes * rounds
    tokens = state["tokens"]
    assert len(tokens) == processes * rounds
    assert all(a < b for a, b in itertools.pairwise(tokens)), tokens


async def test_a_killed_holders_lock_frees_within_its_ttl_and_not_before(
    etcd_server: ServerProcess, anyio_backend: str
) -> None:
    ttl, name = 2, unique("killed-holder")
    async with (
        nodes(anyio_backend, etcd_server.url, ["hold", name, "--ttl", str(ttl)]) as [holder],
        EtcdSync(etcd_server.url) as sync,
    ):
        token = int(await holder.expect("held"))
        holder.process.send_signal(signal.SIGKILL)
        killed = anyio.current_time()
        await holder.process.wait()
        async with sync.try_lock(name) as lock:
            assert lock is None, "a killed holder's lock was free at once"
        async with sync.lock(name, ttl=ttl, wait=ttl + SLACK) as lock:
            waited = anyio.current_time() - killed
            assert lock.token > token
    assert ttl * 2 / 3 - 0.3 <= waited <= ttl + SLACK, waited


async def test_another_process_leads_when_the_leader_is_killed(
    etcd_server: ServerProcess, anyio_backend: str
) -> None:
    ttl, name = 2, unique("failover")
    argvs = [["lead", name, "--ttl", str(ttl), "--id", node_id] for node_id in ("n0", "n1")]
    async with (
        EtcdSync(etcd_server.url) as observer,
        observer.watch_leader(name) as changes,
        nodes(anyio_backend, etcd_server.url, *argvs) as candidates,
    ):

        async def next_leader() -> LeaderInfo:
            with anyio.fail_after(START_TIMEOUT):
                async for info in changes:
                    if info is not None:
                        return info
            raise AssertionError("the watch ended")

        first = await next_leader()
        leader = candidates[int(first.id[1:])]
        follower = candidates[1 - int(first.id[1:])]
        assert int(await leader.expect("leading")) == first.token
        leader.process.send_signal(signal.SIGKILL)
        killed = anyio.current_time()
        token = int(await follower.expect("leading", timeout=ttl + SLACK))
        took = anyio.current_time() - killed
        second = await next_leader()
    assert second == LeaderInfo(name, follower_id(first), token), second
    assert token > first.token
    assert ttl * 2 / 3 - 0.3 <= took <= ttl + SLACK, took


def follower_id(first: LeaderInfo) -> str:
    return "n1" if first.id == "n0" else "n0"
