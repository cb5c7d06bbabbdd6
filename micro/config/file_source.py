"""A config file (JSON, YAML or TOML), watched for changes with watchfiles.

Theory: the watcher watches the file's *directory*, not the file, so it sees
the file being created (an optional file that appears later), replaced by a
rename (how editors and tools save atomically, and how Kubernetes swaps a
ConfigMap's symlink) or deleted. After every batch of changes, and every
``POLL_INTERVAL`` seconds in case the operating system's notices missed one,
it reads the file again and compares bytes: unchanged bytes cost nothing, so
changes to other files in the directory are cheap. New bytes are parsed; a
config that parses is passed on, one that does not is logged with file and
line and skipped, and the last good config stays in effect. Because the file
is read after each batch settles, the last of several rapid edits is what
stays, never an earlier one.

An empty file while running is taken as a write in progress (editors and
``open(path, "w")`` truncate before they write) and skipped; a file deleted
while running keeps its last values.

The watcher drives watchfiles' ``RustNotify`` (the backend under ``awatch``)
itself, because the watch is set up when that object is made: only then does
it report itself started and read the file once more, so an edit made at any
moment after the config was entered is seen. RustNotify waits for changes in
a worker thread that a cancellation cannot interrupt; a sibling task sets the
thread's stop event when the watcher is cancelled, so stopping takes one step
(50 ms), not a whole poll interval.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.to_thread

from .base import Changed, SourceInvalid, SourceUnavailable
from .formats import format_for, parse

if TYPE_CHECKING:
    from watchfiles._rust_notify import RustNotify

__all__ = ["FileSource", "file"]

log = logging.getLogger("micro.config")

#: seconds between re-reads when nothing is noticed (a backstop for missed notices)
POLL_INTERVAL = 5.0
#: milliseconds of quiet after a change before the file is read (lets a write finish)
SETTLE_MS = 50
#: milliseconds a burst of changes may last before the file is read anyway
MAX_SETTLE_MS = 1600


class FileSource:
    """A JSON, YAML or TOML file; ``format`` defaults to the one its suffix names."""

    def __init__(
        self, path: str | Path, *, optional: bool = False, format: str | None = None
    ) -> None:
        self.path = Path(path)
        self.optional = optional
        self.format = format or format_for(self.path)
        self.name = f"file {self.path}"
        self._seen: bytes | None = None  # the bytes last read, good or bad

    async def load(self) -> dict[str, Any]:
        data = await self._read()
        if data is None:
            raise SourceUnavailable(f"config file {self.path} does not exist")
        self._seen = data
        return parse(data, self.format, str(self.path))

    async def watch(
        self,
        changed: Changed,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            from watchfiles._rust_notify import RustNotify
        except ImportError as exc:
            raise ImportError(
                "watching config files needs watchfiles: pip install watchfiles"
            ) from exc
        ready = False
        waiting = False
        directory = anyio.Path(self.path.parent.absolute())
        while True:
            # Watch the file's directory or, while it is missing, the nearest
            # ancestor that exists, to notice the directory being made.
            target = directory
            while not await target.is_dir() and target != target.parent:
                target = target.parent
            if (target != directory) != waiting:
                waiting = not waiting
                if waiting:
                    log.info("config: waiting for the directory %s to exist", directory)
            try:
                watcher = RustNotify([str(target)], False, *_polling(), False, False)
            except OSError as exc:  # vanished meanwhile, or not allowed
                log.warning("config: cannot watch %s (%s); retrying", target, exc)
                watcher = None
            if not ready:
                # From here on no change goes unnoticed (or watching failed, and
                # the source must not hold up the start).
                ready = True
                task_status.started()
            if watcher is None:
                await anyio.sleep(POLL_INTERVAL)
                continue
            with watcher:
                await self._follow(watcher, directory, waiting, changed)

    async def _follow(
        self, watcher: RustNotify, directory: anyio.Path, waiting: bool, changed: Changed
    ) -> None:
        """Re-read the file after each batch of changes until the directory comes or goes.

        While ``waiting`` for the directory, any change in the ancestor watched
        ends this, so the next-nearest ancestor is watched in turn.
        """
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_set_when_cancelled, stop)
            while True:
                if not waiting:
                    # First of all: this catches an edit made between load() and the watch.
                    await self._reread(changed)
                result = await anyio.to_thread.run_sync(
                    watcher.watch, MAX_SETTLE_MS, SETTLE_MS, int(POLL_INTERVAL * 1000), stop
                )
                if result == "stop" or (waiting and result != "timeout"):
                    break
                if await directory.is_dir() == waiting:
                    break
            tg.cancel_scope.cancel()

    async def _reread(self, changed: Changed) -> None:
        try:
            data = await self._read()
        except SourceUnavailable as exc:
            if self._seen is not None:
                log.warning("config: %s; keeping its last values", exc.detail)
            self._seen = None
            return
        if data == self._seen:
            return
        if data is None:
            log.warning("config: %s was deleted; keeping its last values", self.path)
        elif not data.strip():
            log.info("config: %s is empty (being written?); keeping its last values", self.path)
        else:
            self._seen = data
            try:
                tree = parse(data, self.format, str(self.path))
            except SourceInvalid as exc:
                log.error("config: %s; keeping the last good config", exc.detail)
                return
            changed(tree)
            return
        self._seen = data

    async def _read(self) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        try:
            return await anyio.Path(self.path).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SourceUnavailable(f"config file {self.path} cannot be read: {exc}") from exc


def _polling() -> tuple[bool, int]:
    """watchfiles' own switches for filesystems without change notices (network, WSL).

    ``WATCHFILES_FORCE_POLLING`` and ``WATCHFILES_POLL_DELAY_MS``, as awatch reads them.
    """
    force = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    delay = os.environ.get("WATCHFILES_POLL_DELAY_MS", "")
    return (
        bool(force) and force.lower() not in ("false", "disable", "disabled"),
        int(delay) if delay.isdecimal() else 300,
    )


async def _set_when_cancelled(stop: anyio.Event) -> None:
    try:
        await anyio.sleep_forever()
    finally:
        stop.set()


def file(path: str | Path, *, optional: bool = False, format: str | None = None) -> FileSource:
    """A source of a JSON, YAML or TOML file, reloaded when it changes.

    ``optional``: start without it when the file does not exist (it is picked
    up if it appears later). Raises ValueError when the format is unknown.
    """
    return FileSource(path, optional=optional, format=format)
