"""``micro events publish|tail``: store events on a topic, and follow a topic.

The event stream is ``--events``, else ``MICRO_EVENTS``, else the default
(``file``), as for services. ``tail`` prints one JSON object a line (id,
topic, time, deliveries, metadata, and the payload: JSON as JSON, other
UTF-8 as text, anything else as base64) and acknowledges each event it
printed, so ``tail --group`` takes its share of a group's events.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import typer

from ..config import service_options
from ..events import Encoded, Event, EventStream, Offset, resolve_events
from ._app import UsageError, app, parse_json, parse_metadata, print_json, run

__all__ = ["events_app"]

events_app = typer.Typer(
    help="Publish to and follow durable event streams (--events or MICRO_EVENTS).",
    no_args_is_help=True,
)
app.add_typer(events_app, name="events")

EVENTS_HELP = "event stream URL: file, file:///path, memory, nats://…, redis://… [MICRO_EVENTS]"


def _stream(url: str | None) -> EventStream:
    return resolve_events(url or service_options(argv=[]).get("events"))


def _offset(text: str) -> Offset:
    if text in ("start", "new"):
        return text  # type: ignore[return-value]
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--offset is start, new or a Unix time, not {text!r}") from None


def event_json(event: Event) -> dict[str, Any]:
    """An event as JSON for the terminal."""
    payload: Any
    if event.metadata.get("content-type", "").endswith("json"):
        try:
            payload = json.loads(event.payload)
        except ValueError:
            payload = event.payload.decode("utf-8", "backslashreplace")
    else:
        try:
            payload = event.payload.decode("utf-8")
        except UnicodeDecodeError:
            payload = {"base64": base64.b64encode(event.payload).decode()}
    return {
        "id": event.id,
        "topic": event.topic,
        "timestamp": event.timestamp,
        "deliveries": event.deliveries,
        "metadata": dict(event.metadata),
        "payload": payload,
    }


@events_app.command("publish")
def events_publish(
    topic: str = typer.Argument(..., help="topic"),
    data: str = typer.Argument(..., help="the event as JSON ('-' reads stdin)"),
    header: list[str] | None = typer.Option(None, "-H", "--metadata", help="key=value metadata"),
    events: str | None = typer.Option(None, "--events", "--micro-events", help=EVENTS_HELP),
) -> None:
    """Store an event; print its id and time once it is stored."""
    text = sys.stdin.read() if data == "-" else data

    async def main() -> Event:
        parse_json(text, "the event")
        metadata = parse_metadata(header)
        async with _stream(events) as stream:
            encoded = Encoded(text.encode(), "application/json")
            return await stream.publish(topic, encoded, metadata=metadata)

    event = run(main)
    print_json({"id": event.id, "topic": event.topic, "timestamp": event.timestamp}, indent=None)


@events_app.command("tail")
def events_tail(
    topic: str = typer.Argument(..., help="topic"),
    group: str | None = typer.Option(None, "--group", help="consume as a member of this group"),
    offset: str = typer.Option("new", "--offset", help="start, new, or a Unix time"),
    count: int | None = typer.Option(None, "--count", help="stop after this many events"),
    events: str | None = typer.Option(None, "--events", "--micro-events", help=EVENTS_HELP),
) -> None:
    """Print the topic's events as they come, one JSON line each, acknowledging them."""
    if count is not None and count < 1:
        raise typer.BadParameter("--count is at least 1")

    async def main() -> None:
        start = _offset(offset)
        seen = 0
        async with (
            _stream(events) as stream,
            stream.consume(topic, group=group, offset=start) as consumed,
        ):
            async for event in consumed:
                print_json(event_json(event), indent=None)
                await event.ack()
                seen += 1
                if count is not None and seen >= count:
                    return

    run(main)
