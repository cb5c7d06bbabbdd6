"""Pub/sub across processes: a queue group of two subscriber processes."""

from __future__ import annotations

import os
import sys
import uuid
from collections import Counter
from pathlib import Path

import anyio
import anyio.abc
import pytest

import micro
from micro.registry.etcd import EtcdRegistry

from ...servers import ServerProcess

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]


class Member:
    def __init__(self, process: anyio.abc.Process) -> None:
        self.process = process
        self.got: list[int] = []
        self.ready = anyio.Event()

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            while b"\n" in buffer:
                line, _, buffer = buffer.partition(b"\n")
                text = line.decode()
                if text == "ready":
                    self.ready.set()
                elif text.startswith("got "):
                    self.got.append(int(text.split()[1]))


async def test_http_queue_group_across_processes(etcd_server: ServerProcess) -> None:
    registry_url = etcd_server.url.replace("http://", "etcd://")
    topic = f"jobs-{uuid.uuid4().hex[:6]}"
    members: list[Member] = []
    async with anyio.create_task_group() as tg:
        for i in range(2):
            process = await anyio.open_process(
                [
                    sys.executable,
                    "-m",
                    "tests.integration.broker_member",
                    f"member{i}",
                    registry_url,
                    "http",
                    topic,
                    "workers",
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stderr=None,
            )
            member = Member(process)
            members.append(member)
            tg.start_soon(member.read)
        try:
            with anyio.fail_after(30):
                for member in members:
                    await member.ready.wait()
            publisher = micro.Service(
                "publisher",
                address="127.0.0.1:0",
                registry=EtcdRegistry(etcd_server.url),
                broker="http",
            )
            async with publisher.running():
                for n in range(200):
                    await publisher.publish(topic, {"n": n})
            with anyio.fail_after(30):
                while sum(len(m.got) for m in members) < 200:
                    await anyio.sleep(0.02)
        finally:
            for member in members:
                member.process.terminate()
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                for member in members:
                    await member.process.wait()
            for member in members:
                if member.process.returncode is None:
                    member.process.kill()
    counts = Counter(n for m in members for n in m.got)
    assert counts == Counter(range(200))  # every message exactly once across the group
    assert all(m.got for m in members)  # and both members took a share
