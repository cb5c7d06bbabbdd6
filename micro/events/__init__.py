"""Durable event streams: the EventStream protocol, its Event, and its backends.

Backends are chosen by URL, in code or with ``MICRO_EVENTS``:

- ``file`` (the default): a durable SQLite file on this machine, by default
  ``events.db`` under the user's data directory; ``file:///abs/path.db`` or
  ``file://relative/path.db`` names another;
- ``memory``: in-process only, for tests and single-process applications.

Backend modules are imported on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .base import (
    DEAD_SUFFIX,
    Event,
    EventStream,
    EventsUnavailable,
    Offset,
    PublishError,
)
from .memory import MemoryEventStream, default_events

if TYPE_CHECKING:
    from .file import FileEventStream

#: the event stream used when none is given and ``MICRO_EVENTS`` is unset
DEFAULT_EVENTS = "file"

_BACKENDS: dict[str, str] = {
    "FileEventStream": ".file",
}

_shared: dict[str, EventStream] = {}


def __getattr__(name: str) -> Any:
    """Import a backend on first use."""
    if name not in _BACKENDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    backend = getattr(import_module(_BACKENDS[name], __name__), name)
    globals()[name] = backend
    return backend


def from_url(url: str) -> EventStream:
    """A new, unopened event stream for ``url`` (``file``, ``file:///path``, ``memory``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, _, rest = url.partition(":")
    scheme = scheme.lower()
    if scheme == "memory":
        return MemoryEventStream()
    if scheme == "file":
        stream: EventStream = __getattr__("FileEventStream")(rest or None)
        return stream
    raise ValueError(f"unknown event stream {url!r}: use file, file:///path or memory")


def resolve_events(value: EventStream | str | None) -> EventStream:
    """The event stream for a Service option: an object, a URL, or ``MICRO_EVENTS`` / the default.

    Each URL gives one shared stream per process.
    """
    if value is not None and not isinstance(value, str):
        return value
    url = value or os.environ.get("MICRO_EVENTS") or DEFAULT_EVENTS
    if url == "memory":
        return default_events()
    stream = _shared.get(url)
    if stream is None:
        stream = _shared[url] = from_url(url)
    return stream


__all__ = [
    "DEAD_SUFFIX",
    "DEFAULT_EVENTS",
    "Event",
    "EventStream",
    "EventsUnavailable",
    "FileEventStream",
    "MemoryEventStream",
    "Offset",
    "PublishError",
    "default_events",
    "from_url",
    "resolve_events",
]
