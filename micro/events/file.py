"""The embedded durable default: event streams in one SQLite file.

The file store's durability (:mod:`micro.store.file`): WAL mode with
``synchronous=FULL``, so ``publish`` returns once the event's transaction is
fsynced and the event survives the process being killed right after;
concurrent publishes share one commit. Claims and acknowledgements commit
without an fsync of their own: they survive the process dying, and the
machine losing power can at worst deliver an event again. Several processes
may share the file:
their consumers of one group share its events, and each looks for the others'
new events every ``poll_interval`` seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..store.file import default_path as default_store_path
from ._sqlite import SqliteEventStream

__all__ = ["FileEventStream", "default_path"]

#: seconds between looks for events published by other processes
DEFAULT_POLL_INTERVAL = 0.05
#: seconds a transaction waits for another process's before failing
DEFAULT_BUSY_TIMEOUT = 30.0


def default_path() -> Path:
    """``events.db`` in micro's folder of the user's data directory (beside ``store.db``)."""
    return default_store_path().with_name("events.db")


class FileEventStream(SqliteEventStream):
    """An EventStream in a SQLite file; ``async with FileEventStream("events.db") as s:``.

    ``synchronous=False`` skips the fsync of each commit: events then survive
    the process dying but not the machine losing power.
    """

    kind = "file"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        synchronous: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else default_path()
        super().__init__(
            self.path,
            threaded=True,
            synchronous=synchronous,
            poll_interval=poll_interval,
            busy_timeout=busy_timeout,
        )
