"""Durable event streams: the EventStream protocol, its Event, and its backends.

Backends are chosen by URL, in code or with ``MICRO_EVENTS``:

- ``file`` (the default): a durable SQLite file on this machine, by default
  ``events.db`` under the user's data directory; ``file:///abs/path.db`` or
  ``file://relative/path.db`` names another;
- ``memory``: in-process only, for tests and single-process applications;
- ``redis://[user:password@]host:port/db``: Redis Streams (``rediss://`` for
  TLS), which needs ``pip install 'micro-runtime[redis]'``;
- ``nats://host:port``: NATS JetStream (``tls://`` for TLS, several servers
  comma-separated; ``?storage=memory`` keeps events in the server's memory).

Backend modules are imported on first use; :mod:`micro.plugins` maps the
schemes, so a package may add its own (entry point group ``micro.events``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .. import plugins
from .base import (
    DEAD_SUFFIX,
    Encoded,
    Event,
    EventStream,
    EventsUnavailable,
    Offset,
    PublishError,
)
from .memory import MemoryEventStream, default_events

if TYPE_CHECKING:
    from .file import FileEventStream
    from .nats import JetStreamEventStream
    from .redis import RedisEventStream

#: the event stream used when none is given and ``MICRO_EVENTS`` is unset
DEFAULT_EVENTS = "file"

#: backend class -> (module, the extra that installs its dependency)
_BACKENDS: dict[str, tuple[str, str | None]] = {
    "FileEventStream": (".file", None),
    "RedisEventStream": (".redis", "redis"),
    "JetStreamEventStream": (".nats", None),
}


def __getattr__(name: str) -> Any:
    """Import a backend on first use; a missing dependency gives a stub naming the extra."""
    if name not in _BACKENDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, extra = _BACKENDS[name]
    from importlib import import_module

    try:
        backend = getattr(import_module(module, __name__), name)
    except ImportError as exc:
        if extra is None:
            raise
        backend = _missing(name, extra, exc)
    globals()[name] = backend
    return backend


def _missing(name: str, extra: str, error: ImportError) -> type:
    message = (
        f"{name} needs {error.name or 'a missing package'}: pip install 'micro-runtime[{extra}]'"
    )

    class Missing:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise ImportError(message) from error

    Missing.__name__ = Missing.__qualname__ = name
    return Missing


def from_url(url: str) -> EventStream:
    """A new, unopened event stream for ``url`` (``file``, ``file:///path``, ``memory``,
    ``redis://…``, ``nats://…``, or a plugin's scheme)."""
    stream: EventStream = plugins.create("events", url)
    return stream


def resolve_events(value: EventStream | str | None) -> EventStream:
    """The event stream for a Service option: an object, a URL, or ``MICRO_EVENTS`` /
    the default; anything else raises TypeError.

    Each URL gives one shared stream per process.
    """
    if value is None or isinstance(value, str):
        url = value or os.environ.get("MICRO_EVENTS") or DEFAULT_EVENTS
        if url == "memory":
            return default_events()
    stream: EventStream = plugins.resolve("events", value)
    return stream


def _memory(url: str) -> EventStream:
    return MemoryEventStream()


def _file(url: str) -> EventStream:
    _, sep, rest = url.partition("://")
    if not sep:
        rest = url.partition(":")[2]
    stream: EventStream = __getattr__("FileEventStream")(rest or None)
    return stream


def _redis(url: str) -> EventStream:
    stream: EventStream = __getattr__("RedisEventStream")(url)
    return stream


def _nats(url: str) -> EventStream:
    from .nats import jetstream_options

    servers, options = jetstream_options(url)
    stream: EventStream = __getattr__("JetStreamEventStream")(servers, **options)
    return stream


__all__ = [
    "DEAD_SUFFIX",
    "DEFAULT_EVENTS",
    "Encoded",
    "Event",
    "EventStream",
    "EventsUnavailable",
    "FileEventStream",
    "JetStreamEventStream",
    "MemoryEventStream",
    "Offset",
    "PublishError",
    "RedisEventStream",
    "default_events",
    "from_url",
    "resolve_events",
]
