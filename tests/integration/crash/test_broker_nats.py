"""The NATS broker under SIGKILL: a ``publish`` that returned reached the server.

Contract: ``publish`` on the NATS broker returns once the server has the
message (its PING/PONG round trip came back), so a publisher killed right
after a publish returned has not lost it: a subscriber connected all along
gets every such message. (Core NATS then hands messages to subscribers at
most once; that half of the contract is a limit, not a promise, and is not
tried here.)

A child process (``python -m tests.integration.crash.test_broker_nats URL
SUBJECT BACKEND``) publishes from 8 tasks at once, printing each message's id
once its ``publish`` has returned, and is SIGKILLed mid-stream: with the
server running, and with the server frozen (SIGSTOP) for a moment before the
kill, so that what the publisher had written but the server had not read is
all the publisher had (a publish that returned when its message was only
queued on the connection would be lost there).
"""

from __future__ import annotations

import os
import signal
import sys
from functools import partial
from pathlib import Path

import anyio
import anyio.abc
import pytest

from micro.broker import Message
from micro.broker.nats import NatsBroker
from tests.servers import ServerProcess

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
#: tasks publishing at once in the child
PUBLISHERS = 8
#: publishes that have returned in the child before it is killed (or the server frozen)
PUBLISHED_BEFORE_KILL = 300
#: seconds the server stays frozen before the publisher is killed
FROZEN = 1.0
#: bytes per message: enough for a frozen server's socket buffers to fill in that time
PAYLOAD = 1024


@pytest.mark.parametrize("freeze", [False, True], ids=["server-running", "server-frozen"])
async def test_publishes_that_returned_survive_a_killed_publisher(
    fresh_nats_server: ServerProcess, anyio_backend: str, freeze: bool
) -> None:
    server = fresh_nats_server
    assert server.pid is not None
    subject = f"crash.nats.{os.getpid()}.{anyio_backend}"
    received: set[str] = set()
    acked: set[str] = set()
    all_received = anyio.Event()

    async def handle(message: Message) -> None:
        received.add(message.id)
        if acked and received >= acked:
            all_received.set()

    async with NatsBroker(server.url) as broker, anyio.create_task_group() as tg:
        await tg.start(partial(broker.subscribe, subject, handle))
        process = await anyio.open_process(
            [sys.executable, "-m", __name__, server.url, subject, anyio_backend],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stderr=None,
        )
        frozen = False
        try:
            assert process.stdout is not None
            buffer = b""
            lines: list[str] = []

            async def read(count: int = sys.maxsize) -> None:
                nonlocal buffer
                assert process.stdout is not None
                while len(lines) < count:
                    buffer += await process.stdout.receive()
                    *complete, buffer = buffer.split(b"\n")
                    lines.extend(line.decode() for line in complete)

            with anyio.fail_after(60):
                await read(PUBLISHED_BEFORE_KILL)
                if freeze:
                    os.kill(server.pid, signal.SIGSTOP)
                    frozen = True
                    with anyio.move_on_after(FROZEN):
                        await read()
                process.send_signal(signal.SIGKILL)
                async for chunk in process.stdout:
                    buffer += chunk
                await process.wait()
            # A line cut short by the kill is a publish not known to have returned.
            lines.extend(line.decode() for line in buffer.split(b"\n")[:-1])
        finally:
            if frozen:
                os.kill(server.pid, signal.SIGCONT)
            if process.returncode is None:
                process.kill()
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await process.wait()
        assert process.returncode == -signal.SIGKILL
        acked.update(lines)
        if received >= acked:
            all_received.set()
        # Bounded: what the server has reaches the live subscriber at once.
        with anyio.move_on_after(10):
            await all_received.wait()
        tg.cancel_scope.cancel()
    missing = sorted(acked - received, key=lambda id: int(id.removeprefix("m")))
    assert not missing, f"{len(missing)} of {len(acked)} returned publishes lost: {missing[:20]}"


async def _publish(url: str, subject: str) -> None:
    """Publish from PUBLISHERS tasks until killed, printing each id once its publish returned."""
    payload = b"x" * PAYLOAD
    async with NatsBroker(url) as broker, anyio.create_task_group() as tg:
        numbers = iter(range(sys.maxsize))

        async def publisher() -> None:
            for n in numbers:
                await broker.publish(Message(subject, payload, id=f"m{n}"))
                print(f"m{n}", flush=True)

        for _ in range(PUBLISHERS):
            tg.start_soon(publisher)


if __name__ == "__main__":
    url, subject, backend = sys.argv[1:4]
    anyio.run(_publish, url, subject, backend=backend)
