"""Three nodes in three processes; one dies; the client loses no call.

The endpoint called is declared idempotent, so calls in flight on the dying
node are retried elsewhere; calls sent to it afterwards are refused before
reaching a handler (connection refused) and retried too; the node is ejected
at once and leaves the registry within its TTL (SIGKILL) or before its
listener closes (SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path

import anyio
import anyio.abc
import pytest

import micro
from micro.registry import resolve_registry

from ...servers import ServerProcess

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]


class NodeProcess:
    def __init__(self, process: anyio.abc.Process, node_id: str) -> None:
        self.process = process
        self.node_id = node_id
        self.address = ""
        self._buffer = b""

    async def read_line(self) -> str:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            self._buffer += await self.process.stdout.receive()
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def wait_ready(self) -> None:
        with anyio.fail_after(30):
            while True:
                line = await self.read_line()
                if line.startswith("ready "):
                    self.address = line.split()[1]
                    return


async def _start_node(name: str, node_id: str, registry: str) -> NodeProcess:
    process = await anyio.open_process(
        [
            sys.executable,
            "-m",
            "tests.integration.node_process",
            name,
            node_id,
            registry,
            "--ttl",
            "3",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=None,
    )
    node = NodeProcess(process, node_id)
    await node.wait_ready()
    return node


async def _nodes_seen(client: micro.Client, name: str) -> set[str]:
    try:
        records = await client._lookup(name)
    except micro.NotFound:
        return set()
    return {n.address for r in records for n in r.nodes}


async def _failover(registry_url: str, sig: signal.Signals) -> None:
    name = f"failover-{uuid.uuid4().hex[:8]}"
    nodes = [await _start_node(name, f"n{i}", registry_url) for i in range(3)]
    victim = nodes[0]
    answers: Counter[str] = Counter()
    after_gone: Counter[str] = Counter()
    failures: list[BaseException] = []
    try:
        async with micro.Client(registry=resolve_registry(registry_url), retries=3) as client:
            with anyio.fail_after(20):
                while await _nodes_seen(client, name) != {n.address for n in nodes}:
                    await anyio.sleep(0.02)
            stop = anyio.Event()
            gone = False

            async def drive() -> None:
                while not stop.is_set():
                    try:
                        who = await client.call(name, "Node.Whoami", {}, timeout=10)
                    except micro.MicroError as exc:
                        failures.append(exc)
                        continue
                    answers[who["node"]] += 1
                    if gone:
                        after_gone[who["node"]] += 1

            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(drive)
                with anyio.fail_after(30):
                    while answers[victim.node_id] < 20:
                        await anyio.sleep(0.01)
                victim.process.send_signal(sig)
                with anyio.fail_after(30):
                    await victim.process.wait()
                    # Gone from the registry (within the TTL for SIGKILL).
                    while victim.address in await _nodes_seen(client, name):
                        await anyio.sleep(0.05)
                gone = True
                with anyio.fail_after(30):
                    while sum(after_gone.values()) < 200:
                        await anyio.sleep(0.01)
                stop.set()
    finally:
        for node in nodes:
            if node.process.returncode is None:
                node.process.kill()
            with anyio.CancelScope(shield=True):
                await node.process.wait()
    assert failures == []
    assert after_gone[victim.node_id] == 0
    assert set(after_gone) == {"n1", "n2"}
    if sig == signal.SIGTERM:
        assert victim.process.returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_failover_with_etcd(etcd_server: ServerProcess, sig: signal.Signals) -> None:
    await _failover(etcd_server.url.replace("http://", "etcd://"), sig)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
async def test_failover_with_mdns(sig: signal.Signals) -> None:
    assert os.environ.get("MICRO_MDNS_INTERFACES") == "127.0.0.1"  # never beyond this host
    await _failover("mdns", sig)


@pytest.mark.parametrize("kind", ["mdns", "etcd"])
async def test_a_service_in_another_process_is_callable_by_name(
    request: pytest.FixtureRequest, kind: str
) -> None:
    """Started in one process, called by name from this one, found through the registry
    alone (``benchmarks/discovery.py`` measures how soon: well under a second here)."""
    if kind == "etcd":
        registry_url = request.getfixturevalue("etcd_server").url.replace("http://", "etcd://")
    else:
        registry_url = "mdns"
    name = f"remote-{uuid.uuid4().hex[:8]}"
    node = await _start_node(name, "far", registry_url)
    try:
        async with micro.Client(registry=resolve_registry(registry_url)) as client:
            with anyio.fail_after(10):
                while True:
                    try:
                        who = await client.call(name, "Node.Whoami", {}, timeout=5)
                        break
                    except micro.NotFound:
                        await anyio.sleep(0.01)
            assert who["node"] == "far"
            # Stopped (SIGKILL): gone from the registry within its TTL (3 s; etcd counts
            # whole seconds), seen through the client's own watch.
            node.process.kill()
            await node.process.wait()
            with anyio.fail_after(3 + 2):
                while node.address in await _nodes_seen(client, name):
                    await anyio.sleep(0.05)
    finally:
        if node.process.returncode is None:
            node.process.kill()
        with anyio.CancelScope(shield=True):
            await node.process.wait()
