"""The Source protocol and the config errors.

A source gives a tree of config values (nested dicts) when asked with
``load()``. A source that can change while the service runs (a file, etcd)
also has ``watch(changed)``: a long-running coroutine, run as a supervised
task, that reports itself started once it is watching (or trying to: a
source that is down must not hold up the start), then calls
``changed(data)`` with the source's whole tree each time it may have
changed. It handles its own reconnects and retries, so a backend that is
down for a while is waited for rather than crashed on, and it calls
``changed`` only with data that parsed: a bad edit is logged and skipped.
The first call may repeat what ``load()`` gave: the config ignores data equal
to what it has.

Errors: ``load()`` raises :class:`SourceUnavailable` when the source is
missing or unreachable (which an *optional* source is allowed to be at start)
and :class:`SourceInvalid` when its content does not parse (which no source
is allowed, optional or not).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.abc

from ..errors import MicroError

__all__ = [
    "Source",
    "WatchableSource",
    "Changed",
    "ConfigError",
    "SourceUnavailable",
    "SourceInvalid",
    "MissingKey",
    "InvalidValue",
]

#: what a watching source calls with its whole new tree
Changed = Callable[[dict[str, Any]], None]


@runtime_checkable
class Source(Protocol):
    """Where config comes from: defaults, a file, environment variables, flags, etcd."""

    #: what to call the source in logs and errors (``file config.yaml``)
    name: str
    #: whether the service may start without it when it is missing or unreachable
    optional: bool

    async def load(self) -> dict[str, Any]:
        """The source's values as a tree; raises SourceUnavailable or SourceInvalid."""
        ...


@runtime_checkable
class WatchableSource(Source, Protocol):
    """A source that can change while the service runs."""

    async def watch(
        self,
        changed: Changed,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Call ``changed(tree)`` whenever the source may have changed; run until cancelled.

        Calls ``task_status.started()`` once changes can no longer be missed,
        or once the first attempt to watch has failed.
        """
        ...


class ConfigError(MicroError):
    """Something is wrong with the config; the detail says what and where."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, id="config")


class SourceUnavailable(ConfigError):
    """A source is missing (no such file) or unreachable (etcd is down)."""

    default_code = 503


class SourceInvalid(ConfigError):
    """A source's content does not parse; the detail names the file and line, or the key."""

    default_code = 400


class MissingKey(ConfigError, KeyError):
    """No value at the key, and no default was given."""

    default_code = 404

    def __str__(self) -> str:  # KeyError would show the detail quoted
        return MicroError.__str__(self)


class InvalidValue(ConfigError, ValueError):
    """The value at a key is not of the type asked for; the detail names the key or field."""

    default_code = 400
