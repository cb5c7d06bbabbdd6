"""In-process event stream: for tests and single-process applications.

The same engine as the file backend (:mod:`micro.events._sqlite`) on an
in-memory SQLite database, run in the event loop's thread: events outlive
closing the stream, not the process.
"""

from __future__ import annotations

from ._sqlite import SqliteEventStream

__all__ = ["MemoryEventStream", "default_events"]


class MemoryEventStream(SqliteEventStream):
    """An EventStream in this process's memory; ``async with MemoryEventStream() as stream:``."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__(":memory:", threaded=False)


_default: MemoryEventStream | None = None


def default_events() -> MemoryEventStream:
    """The process-wide memory event stream."""
    global _default
    if _default is None:
        _default = MemoryEventStream()
    return _default
