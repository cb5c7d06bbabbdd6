"""Pub/sub under SIGKILL: every ``publish`` that returned was handled.

Subscribers run in their own processes over the HTTP broker (etcd as the
registry), each writing the id of every message it handled to a file, fsynced
before its handler returns. Publishers in this process count the publishes
that returned without an error. A subscriber is SIGKILLed mid-stream, while
its handlers are busy; then every acknowledged id must be in some file.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import uuid
from pathlib import Path

import anyio
import anyio.abc
import pytest

import micro
from micro.broker import PublishError
from micro.registry.etcd import EtcdRegistry

from ...servers import ServerProcess

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
#: seconds each handler works before it records the message
HANDLER_DELAY = 0.005


async def _subscriber(
    name: str, registry: str, topic: str, queue: str, path: Path, backend: str
) -> anyio.abc.Process:
    process = await anyio.open_process(
        [
            sys.executable,
            "-m",
            "tests.integration.crash.subscriber_process",
            name,
            registry,
            topic,
            queue,
            str(HANDLER_DELAY),
            str(path),
            backend,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=None,
    )
    assert process.stdout is not None
    seen = b""
    with anyio.fail_after(30):
        while b"ready\n" not in seen:
            seen += await process.stdout.receive()
    return process


def _handled(*paths: Path) -> set[int]:
    return {int(line) for path in paths if path.exists() for line in path.read_text().split()}


async def _stop(processes: list[anyio.abc.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.kill()
    with anyio.CancelScope(shield=True), anyio.move_on_after(10):
        for process in processes:
            await process.wait()


async def _publish_and_kill(
    etcd: ServerProcess,
    topic: str,
    victim: anyio.abc.Process,
    publishers: int,
    *,
    kill_after: int,
    stop_after: int,
) -> tuple[set[int], set[int], int]:
    """Publish from ``publishers`` tasks; SIGKILL ``victim`` once ``kill_after`` returned.

    Publishing stops once ``stop_after`` publishes returned, or every
    publisher has failed since the kill. Returns the acknowledged and the
    failed message numbers, and how many were acknowledged at the kill.
    """
    acked: set[int] = set()
    failed: set[int] = set()
    numbers = itertools.count()
    killed = anyio.Event()
    at_kill = 0
    failing_after_kill: set[int] = set()

    publisher = micro.Service(
        f"publisher-{uuid.uuid4().hex[:6]}",
        address="127.0.0.1:0",
        registry=EtcdRegistry(etcd.url),
        broker="http?deliver_timeout=5s",
    )

    async def publish(worker: int) -> None:
        while len(acked) < stop_after and worker not in failing_after_kill:
            n = next(numbers)
            try:
                await publisher.publish(topic, {"n": n})
            except PublishError:
                failed.add(n)
                if killed.is_set():
                    failing_after_kill.add(worker)
                continue
            acked.add(n)
            if len(acked) >= kill_after and not killed.is_set():
                nonlocal at_kill
                at_kill = len(acked)
                os.kill(victim.pid, signal.SIGKILL)
                killed.set()

    async with publisher.running():
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for worker in range(publishers):
                    tg.start_soon(publish, worker)
    assert killed.is_set()
    return acked, failed, at_kill


@pytest.mark.parametrize("publishers", [1, 8])
async def test_killed_member_of_a_queue_group(
    etcd_server: ServerProcess, tmp_path: Path, anyio_backend: str, publishers: int
) -> None:
    """One of two group members dies mid-stream: the other takes over, nothing is lost."""
    registry = etcd_server.url.replace("http://", "etcd://")
    topic = f"crash-{uuid.uuid4().hex[:6]}"
    files = [tmp_path / "member0.log", tmp_path / "member1.log"]
    members: list[anyio.abc.Process] = []
    try:
        for i, path in enumerate(files):
            members.append(
                await _subscriber(f"member{i}", registry, topic, "workers", path, anyio_backend)
            )
        acked, _, at_kill = await _publish_and_kill(
            etcd_server, topic, members[0], publishers, kill_after=100, stop_after=250
        )
        handled = _handled(*files)
    finally:
        await _stop(members)
    assert acked - handled == set(), f"acknowledged but never handled: {sorted(acked - handled)}"
    assert len(acked) > at_kill  # the group's other member took over
    assert _handled(files[0]), "the member killed had handled a share before it died"


async def test_killed_sole_subscriber(
    etcd_server: ServerProcess, tmp_path: Path, anyio_backend: str
) -> None:
    """The only subscriber dies mid-stream: publishes fail from then on, none is lost."""
    registry = etcd_server.url.replace("http://", "etcd://")
    topic = f"crash-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "sole.log"
    process = await _subscriber("sole", registry, topic, "-", path, anyio_backend)
    try:
        acked, failed, _ = await _publish_and_kill(
            etcd_server, topic, process, 8, kill_after=150, stop_after=10_000
        )
        handled = _handled(path)
    finally:
        await _stop([process])
    assert acked - handled == set(), f"acknowledged but never handled: {sorted(acked - handled)}"
    assert failed, "publishes after the kill fail"
