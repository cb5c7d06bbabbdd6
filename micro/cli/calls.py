"""``micro call``, ``micro stream``, ``micro publish`` and ``micro subscribe``."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import typer

from ..broker import resolve_broker
from ..broker.base import Message
from ..client.client import Client
from ..client.stream import ClientStream
from ..service import Service
from ._app import UsageError, app, parse_json, parse_metadata, print_json, run, state

__all__ = ["call", "publish", "stream", "subscribe"]

HEADER_HELP = "metadata as key=value (repeatable)"


@app.command()
def call(
    service: str = typer.Argument(..., help="service name"),
    endpoint: str = typer.Argument(..., help="endpoint, as Handler.Method"),
    request: str = typer.Argument("{}", help="the request as JSON ('-' reads stdin)"),
    header: list[str] = typer.Option([], "-H", "--header", help=HEADER_HELP),
    timeout: float | None = typer.Option(None, "--timeout", help="seconds (default 30)"),
    address: str | None = typer.Option(None, "--address", help="call host:port, no discovery"),
) -> None:
    """Call an endpoint and print its JSON response."""

    async def main() -> Any:
        body = parse_json(sys.stdin.read() if request == "-" else request, "the request")
        metadata = parse_metadata(header)
        async with Client(registry=state.registry) as client:
            return await client.call(
                service, endpoint, body, Any, metadata=metadata, timeout=timeout, address=address
            )

    print_json(run(main))


@app.command()
def stream(
    service: str = typer.Argument(..., help="service name"),
    endpoint: str = typer.Argument(..., help="endpoint, as Handler.Method"),
    header: list[str] = typer.Option([], "-H", "--header", help=HEADER_HELP),
    timeout: float | None = typer.Option(None, "--timeout", help="seconds for the whole stream"),
    address: str | None = typer.Option(None, "--address", help="call host:port, no discovery"),
) -> None:
    """Send each JSON line of stdin as a message; print each response as it arrives.

    End of input closes the sending side. Works for client, server and
    bidirectional streaming endpoints (a server stream takes one line).
    """

    async def main() -> None:
        metadata = parse_metadata(header)
        async with (
            Client(registry=state.registry) as client,
            client.stream(
                service, endpoint, metadata=metadata, timeout=timeout, address=address
            ) as s,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_send_lines, s)
            async for item in s:
                print_json(item, indent=None)
            tg.cancel_scope.cancel()

    run(main)


async def _send_lines(s: ClientStream[Any]) -> None:
    number = 0
    async for line in _stdin_lines():
        number += 1
        if line.strip():
            await s.send(parse_json(line.decode("utf-8", "replace"), f"line {number} of stdin"))
    await s.close_send()


async def _stdin_lines() -> AsyncIterator[bytes]:
    """stdin's lines as they come, without a thread (so waiting can be cancelled)."""
    fd = sys.stdin.fileno()
    regular = stat.S_ISREG(os.fstat(fd).st_mode)  # files never block, and epoll refuses them
    buffer = b""
    while True:
        if not regular:
            await anyio.wait_readable(fd)
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line
    if buffer:
        yield buffer


@app.command()
def publish(
    topic: str = typer.Argument(..., help="topic"),
    message: str = typer.Argument(..., help="the message as JSON ('-' reads stdin)"),
    header: list[str] = typer.Option([], "-H", "--header", help="message header key=value"),
) -> None:
    """Publish a JSON message to a topic."""

    async def main() -> None:
        value = parse_json(sys.stdin.read() if message == "-" else message, "the message")
        headers = parse_metadata(header)
        async with Client(registry=state.registry) as client:
            broker = resolve_broker(state.broker, client=client, registry=client.registry)
            client.broker = broker
            async with broker:
                await client.publish(topic, value, headers=headers)

    run(main)


@app.command()
def subscribe(
    topic: str = typer.Argument(..., help="topic"),
    queue: str | None = typer.Option(None, "--queue", help="queue group: one member gets each"),
) -> None:
    """Print each message of a topic as a JSON line until interrupted.

    Subscribing runs a small service (named ``micro.cli.subscribe``) that the
    broker delivers to; ``MICRO_ADDRESS`` and the other ``MICRO_*`` variables
    apply to it.
    """

    async def main() -> None:
        service = Service(
            "micro.cli.subscribe",
            registry=state.registry,
            broker=state.broker,
            register=False,
            argv=[],
        )

        async def show(message: Message) -> None:
            try:
                value = parse_json(bytes(message.body).decode("utf-8", "replace"), "the message")
            except UsageError:
                value = bytes(message.body).decode("utf-8", "backslashreplace")
            print_json(value, indent=None)

        service.subscribe(topic, show, queue=queue)

        @service.after_start
        async def ready() -> None:
            print(f"subscribed to {topic}", file=sys.stderr, flush=True)

        await service.serve()

    run(main)
