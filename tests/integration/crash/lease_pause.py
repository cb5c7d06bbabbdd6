"""Pause a holder past its TTL with SIGSTOP while other processes contend, then resume it.

The scenario of the lock and leadership crash tests: ``nodes`` processes of
``lease_holder`` contend for one name in etcd. Once one holds it, it gets
SIGSTOP (a GC pause, a swap storm, a VM migration: the process runs nothing
and its lease keeper sends nothing). The test waits until another node holds
the name, keeps the first one stopped past its TTL, then sends SIGCONT and
waits until the first one reports the loss. Each node's log says, with
system-wide monotonic timestamps, when it ran its body and whether it believed
it held the name.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc

ROOT = Path(__file__).resolve().parents[3]
#: seconds a node may take to start, or to be elected the first time
START_TIMEOUT = 30.0
#: seconds past the TTL within which another node must take over
TAKEOVER_SLACK = 10.0
#: seconds the stopped holder stays stopped past its TTL
OVERSLEEP = 0.5
#: seconds a resumed holder may take to report its loss
LOSS_TIMEOUT = 10.0
#: seconds between reads of the logs
POLL = 0.05


@dataclass(frozen=True)
class Line:
    at: float  # time.monotonic() in the node
    kind: str  # enter, iter, lost
    token: int
    held: bool = False
    reason: str = ""


def parse(text: str) -> list[Line]:
    lines = []
    for raw in text.splitlines():
        at, kind, token, *rest = raw.split(" ", 3)
        held = kind == "iter" and rest == ["1"]
        reason = rest[0] if kind == "lost" and rest else ""
        lines.append(Line(float(at), kind, int(token), held, reason))
    return lines


@dataclass
class Node:
    process: anyio.abc.Process
    log: Path
    buffer: bytes = b""

    def lines(self) -> list[Line]:
        try:
            text = self.log.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # A line being written may be incomplete: only whole lines count.
        return parse(text[: text.rfind("\n") + 1])

    async def ready(self) -> None:
        assert self.process.stdout is not None
        with anyio.fail_after(START_TIMEOUT):
            while b"ready\n" not in self.buffer:
                try:
                    self.buffer += await self.process.stdout.receive()
                except anyio.EndOfStream:
                    code = await self.process.wait()
                    raise AssertionError(f"the node exited while starting ({code})") from None


@dataclass
class Pause:
    """What happened: the stopped holder, the one that took over, and when."""

    old: Node
    new: Node
    old_token: int
    new_token: int
    stopped: float  # time.monotonic() at SIGSTOP
    resumed: float  # time.monotonic() just before SIGCONT
    others: list[Node] = field(default_factory=list)

    def new_term_started(self) -> float:
        """When the new holder's body first ran."""
        entered = [x for x in self.new.lines() if x.kind == "enter"]
        return min(x.at for x in entered if x.token == self.new_token)

    def old_iterations(self) -> list[Line]:
        return [x for x in self.old.lines() if x.kind == "iter" and x.token == self.old_token]

    def old_loss(self) -> Line | None:
        losses = [x for x in self.old.lines() if x.kind == "lost" and x.token == self.old_token]
        return losses[0] if losses else None


async def pause_the_holder(
    url: str, backend: str, mode: str, workdir: Path, *, ttl: float = 2.0, nodes: int = 3
) -> Pause:
    """Run the scenario (see the module's docstring) and say what happened."""
    name = f"pause-{mode}-{uuid.uuid4().hex[:10]}"
    started: list[Node] = []
    try:
        for i in range(nodes):
            log = workdir / f"{mode}-{backend}-{i}.log"
            argv = [sys.executable, "-m", "tests.integration.crash.lease_holder", url, mode]
            argv += [name, str(log), "--backend", backend, "--ttl", str(ttl), "--id", f"n{i}"]
            process = await anyio.open_process(
                argv, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stderr=None
            )
            started.append(Node(process, log))
        for node in started:
            await node.ready()

        def holder() -> tuple[Node, int] | None:
            # The node of the latest hold whose body ran a few times, not lost.
            holds = []
            for node in started:
                lines = node.lines()
                for token in {x.token for x in lines if x.kind == "enter"}:
                    ran = sum(x.kind == "iter" and x.token == token for x in lines)
                    lost = any(x.kind == "lost" and x.token == token for x in lines)
                    if ran >= 3 and not lost:
                        holds.append((token, node))
            return max(holds, key=lambda hold: hold[0])[::-1] if holds else None

        with anyio.fail_after(START_TIMEOUT):
            while (found := holder()) is None:
                await anyio.sleep(POLL)
        old, old_token = found
        old.process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()

        def took_over() -> tuple[Node, int] | None:
            # The first hold after the stopped one's, by token.
            holds = [
                (x.token, n)
                for n in started
                if n is not old
                for x in n.lines()
                if x.kind == "enter" and x.token > old_token
            ]
            return min(holds, key=lambda hold: hold[0])[::-1] if holds else None

        with anyio.fail_after(ttl + TAKEOVER_SLACK):
            while (taken := took_over()) is None:
                await anyio.sleep(POLL)
        new, new_token = taken
        # The pause lasts past the TTL, as a long GC pause or a VM migration would.
        await anyio.sleep(max(0.0, stopped + ttl + OVERSLEEP - time.monotonic()))
        # Taken before the signal: the holder cannot run again until it is sent, so
        # whatever it does once resumed is stamped later than this.
        resumed = time.monotonic()
        old.process.send_signal(signal.SIGCONT)
        pause = Pause(old, new, old_token, new_token, stopped, resumed)
        pause.others = [n for n in started if n is not old and n is not new]
        with anyio.fail_after(LOSS_TIMEOUT):
            while pause.old_loss() is None:
                await anyio.sleep(POLL)
        return pause
    finally:
        with anyio.CancelScope(shield=True):
            for node in started:
                if node.process.returncode is None:
                    node.process.kill()
                await node.process.wait()
                await node.process.aclose()
