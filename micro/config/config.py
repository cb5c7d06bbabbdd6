"""Config: sources merged in order, read by dotted key, reloaded while running.

Theory: the config keeps one tree per source (its *layer*) and the merge of
all layers, later sources overriding earlier ones key by key. Entering the
config loads every source in order; a missing or unreachable optional source
is logged and counts as empty, anything else that fails to load fails the
start. Then one watcher task per watchable source runs in a task group (the
service's, through its supervisor, or one the config owns): each time a
source reports a new tree, the layer is replaced, the merge redone, and
readers of ``watch()`` woken, but only if the merged value they watch changed.

Readers always see a whole merged config, never a half-applied one: layers
are replaced in one step, on the event loop, without awaiting in between.
``watch()`` keeps no queue: a slow reader gets the latest value, not every
value on the way, so after a burst of edits every reader settles on the last.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar, overload

import anyio
import anyio.abc

from .. import plugins
from ..supervisor import Supervisor
from .base import (
    ConfigError,
    InvalidValue,
    MissingKey,
    Source,
    SourceUnavailable,
    WatchableSource,
)
from .bind import bind
from .merge import MISSING, lookup, merge
from .sources import DefaultsSource
from .urls import source as source_from_url
from .values import to_bool, to_dict, to_duration, to_float, to_int, to_list, to_size, to_str

__all__ = ["Config", "ConfigWatch"]

log = logging.getLogger("micro.config")

T = TypeVar("T")


class Config:
    """Config from several sources; ``async with Config(sources=[...]) as config:``.

    ``sources`` are applied in order (a plain mapping is taken as defaults, a string
    as a source URL: ``env:APP_``, ``file:config.yaml``, ``etcd://host:port/prefix``).
    ``task_group`` runs the watchers: a Supervisor (as a service passes), a
    TaskGroup, or None for one the config owns while it is entered.
    """

    def __init__(
        self,
        sources: Sequence[Source | Mapping[str, Any] | str] = (),
        *,
        task_group: Supervisor | anyio.abc.TaskGroup | None = None,
    ) -> None:
        self.sources: list[Source] = [
            DefaultsSource(s) if isinstance(s, Mapping) else _source(s) for s in sources
        ]
        self._task_group = task_group
        self._layers: list[dict[str, Any]] = [{} for _ in self.sources]
        self._data: dict[str, Any] | None = None
        self._changed: anyio.Event | None = None  # set (and replaced) on every change
        self._scopes: set[anyio.CancelScope] = set()
        self._stack: contextlib.AsyncExitStack | None = None
        self._open = False

    # -- lifecycle -------------------------------------------------------------

    async def load(self) -> None:
        """Load every source once (no watching); raises ConfigError for a bad source."""
        for index, source in enumerate(self.sources):
            try:
                self._layers[index] = await source.load()
            except SourceUnavailable as exc:
                if not source.optional:
                    raise
                self._layers[index] = {}
                log.warning(
                    "config: optional source %s is unavailable, starting without it: %s",
                    source.name,
                    exc.detail,
                )
        if self._changed is None or self._changed.is_set():
            self._changed = anyio.Event()
        self._replace(merge(*self._layers), "a load")

    async def __aenter__(self) -> Config:
        stack = contextlib.AsyncExitStack()
        async with stack:
            await stack.enter_async_context(self.running(self._task_group))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(*exc_info)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def running(
        self, task_group: Supervisor | anyio.abc.TaskGroup | None = None
    ) -> AsyncIterator[Config]:
        """Load, and watch the sources in ``task_group`` (or an own one) until the block ends."""
        if self._open:
            raise RuntimeError("this Config is already running")
        await self.load()
        async with contextlib.AsyncExitStack() as stack:
            if task_group is None:
                task_group = await stack.enter_async_context(anyio.create_task_group())
            supervisor = (
                task_group if isinstance(task_group, Supervisor) else Supervisor(task_group)
            )
            self._open = True
            stack.callback(self._close)
            for index, source in enumerate(self.sources):
                if isinstance(source, WatchableSource):
                    # Started means watching: a change made after entering is not missed.
                    await supervisor.start(f"config watcher ({source.name})", self._watch, index)
            yield self

    def _close(self) -> None:
        self._open = False
        for scope in self._scopes:
            scope.cancel()
        if self._changed is not None:
            self._changed.set()  # readers of watch() see the config closed and stop

    async def _watch(
        self, index: int, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        source = self.sources[index]
        assert isinstance(source, WatchableSource)
        if not self._open:  # closed before a restart came round
            task_status.started()
            return
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                await source.watch(lambda tree: self._update(index, tree), task_status=task_status)
            finally:
                self._scopes.discard(scope)

    def _update(self, index: int, tree: dict[str, Any]) -> None:
        """Replace one source's layer; wake readers if the merged config changed."""
        if tree == self._layers[index]:
            return
        self._layers[index] = tree
        self._replace(merge(*self._layers), self.sources[index].name)

    def _replace(self, data: dict[str, Any], origin: str) -> None:
        """Make ``data`` the config; wake the readers of watch() if it changed."""
        if data == self._data:
            return
        if self._data is not None:
            log.info("config: reloaded from %s", origin)
        self._data = data
        changed, self._changed = self._changed, anyio.Event()
        if changed is not None:
            changed.set()

    # -- reading ---------------------------------------------------------------

    def _tree(self) -> dict[str, Any]:
        if self._data is None:
            raise ConfigError("the config is not loaded: use `async with config:`")
        return self._data

    def get(self, key: str = "", default: Any = None) -> Any:
        """The value at a dotted key (``"database.host"``), or ``default``; a copy."""
        value = lookup(self._tree(), key)
        return default if value is MISSING else copy.deepcopy(value)

    def snapshot(self) -> dict[str, Any]:
        """The whole merged config, as a copy."""
        return copy.deepcopy(self._tree())

    def _typed(self, key: str, default: Any, convert: Callable[[Any], T]) -> T:
        value = lookup(self._tree(), key)
        if value is MISSING:
            if default is MISSING:
                raise MissingKey(f"no config value at {key or '(root)'}")
            fallback: T = default
            return fallback
        try:
            return convert(value)
        except ValueError as exc:
            raise InvalidValue(f"config {key} {exc}") from None

    def get_str(self, key: str, default: Any = MISSING) -> str:
        """A string; raises MissingKey (no value, no default) or InvalidValue."""
        return self._typed(key, default, to_str)

    def get_int(self, key: str, default: Any = MISSING) -> int:
        """An int (``8080`` or ``"8080"``); raises MissingKey or InvalidValue."""
        return self._typed(key, default, to_int)

    def get_float(self, key: str, default: Any = MISSING) -> float:
        """A float; raises MissingKey or InvalidValue."""
        return self._typed(key, default, to_float)

    def get_bool(self, key: str, default: Any = MISSING) -> bool:
        """A bool (true/false, yes/no, on/off, 1/0); raises MissingKey or InvalidValue."""
        return self._typed(key, default, to_bool)

    def get_duration(self, key: str, default: Any = MISSING) -> float:
        """Seconds, from ``"1.5s"``, ``"250ms"``, ``"2m"``, ``"1h"`` or a number of seconds."""
        return self._typed(key, default, to_duration)

    def get_size(self, key: str, default: Any = MISSING) -> int:
        """Bytes, from an int or ``"512KiB"``, ``"4MiB"``, ``"1GB"``."""
        return self._typed(key, default, to_size)

    def get_list(self, key: str, default: Any = MISSING) -> list[Any]:
        """A list, from a list, a JSON array or ``"a,b,c"``; a copy."""
        return self._typed(key, default, lambda v: copy.deepcopy(to_list(v)))

    def get_dict(self, key: str, default: Any = MISSING) -> dict[str, Any]:
        """A dict, from a mapping, a JSON object or ``"k=v,k2=v2"``; a copy."""
        return self._typed(key, default, lambda v: copy.deepcopy(to_dict(v)))

    def bind(self, key: str, into: type[T]) -> T:
        """The section at ``key`` as an ``into`` (a dataclass, pydantic model, TypedDict...).

        An absent section binds as empty, so field defaults apply. Raises
        InvalidValue naming the bad field by its full key.
        """
        value = lookup(self._tree(), key)
        return bind({} if value is MISSING else value, into, key)

    # -- watching --------------------------------------------------------------

    @overload
    def watch(
        self, key: str, *, into: None = None, default: Any = None, initial: bool = False
    ) -> ConfigWatch[Any]: ...

    @overload
    def watch(
        self, key: str, *, into: type[T], default: Any = None, initial: bool = False
    ) -> ConfigWatch[T]: ...

    def watch(
        self,
        key: str,
        *,
        into: type[Any] | None = None,
        default: Any = None,
        initial: bool = False,
    ) -> ConfigWatch[Any]:
        """Each new value at ``key``: ``async for flags in config.watch("feature.flags"):``.

        Yields when the merged value at the key changes (``default`` when it is
        removed), the current value first if ``initial``. With ``into``, values
        are bound to that type and ones that do not fit are logged and skipped.
        Ends when the config is closed.
        """
        self._tree()
        return ConfigWatch(self, key, into, default, initial)


class ConfigWatch(AsyncIterator[T]):
    """The async iterator :meth:`Config.watch` returns."""

    def __init__(
        self, config: Config, key: str, into: type[Any] | None, default: Any, initial: bool
    ) -> None:
        self._config = config
        self._key = key
        self._into = into
        self._default = default
        # What was last seen: the current value, unless the first read should yield it.
        self._last: Any = _UNSEEN if initial else self._current()

    def _current(self) -> Any:
        value = lookup(self._config._tree(), self._key)
        return self._default if value is MISSING else value

    def __aiter__(self) -> ConfigWatch[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            changed = self._config._changed
            if changed is None or (not self._config._open and self._last is not _UNSEEN):
                raise StopAsyncIteration
            value = self._current()
            if value != self._last:
                self._last = value
                result: T
                if self._into is None:
                    result = copy.deepcopy(value)
                    return result
                try:
                    result = bind(value, self._into, self._key)
                except InvalidValue as exc:
                    log.error("config: %s; not passed to the watcher", exc.detail)
                    continue
                return result
            await changed.wait()


class _Unseen:
    pass


_UNSEEN: Any = _Unseen()


def _source(value: Source | str) -> Source:
    """A source as given, or the one its URL names; anything else is a TypeError."""
    if isinstance(value, str):
        return source_from_url(value)
    plugins.check("config", value)
    return value
