"""Config over sources that need no I/O: reads, typed reads, binding, watching, fallbacks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, TypedDict

import anyio
import anyio.abc
import pydantic
import pytest

from micro.config import (
    Changed,
    Config,
    ConfigError,
    InvalidValue,
    MissingKey,
    SourceInvalid,
    SourceUnavailable,
    bind,
    cli,
    defaults,
    env,
)
from micro.supervisor import Supervisor

pytestmark = pytest.mark.anyio


@dataclass
class Database:
    host: str
    port: int = 5432
    ratio: float = 1.0
    tls: bool = False
    replicas: list[str] = field(default_factory=list)


class DatabaseModel(pydantic.BaseModel):
    host: str
    port: int = 5432


class Limits(TypedDict):
    rps: int


class ScriptedSource:
    """A watchable source whose changes the test pushes."""

    def __init__(
        self, tree: dict[str, Any], *, name: str = "scripted", optional: bool = False
    ) -> None:
        self.name = name
        self.optional = optional
        self.tree = tree
        self.fail_load: Exception | None = None
        self.changed: Changed | None = None
        self.started = anyio.Event()

    async def load(self) -> dict[str, Any]:
        if self.fail_load is not None:
            raise self.fail_load
        return dict(self.tree)

    async def watch(
        self,
        changed: Changed,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        self.changed = changed
        task_status.started()
        self.started.set()
        await anyio.sleep_forever()

    def push(self, tree: dict[str, Any]) -> None:
        assert self.changed is not None
        self.changed(tree)


def layered() -> Config:
    return Config(
        sources=[
            {"database": {"host": "localhost", "port": 5432}, "feature": {"flags": ["a"]}},
            env(
                "APP_",
                environ={"APP_DATABASE__HOST": "db-env", "APP_DATABASE__TLS": "yes"},
            ),
            cli(["--database.port=6543", "--timeout=1.5s"]),
        ]
    )


async def test_later_sources_override_earlier_ones() -> None:
    async with layered() as config:
        assert config.get("database") == {"host": "db-env", "port": "6543", "tls": "yes"}
        assert config.get("database.host") == "db-env"
        assert config.get("feature.flags") == ["a"]
        assert config.get("nope") is None
        assert config.get("nope", default=7) == 7
        assert config.snapshot()["timeout"] == "1.5s"


async def test_typed_reads() -> None:
    async with layered() as config:
        assert config.get_int("database.port") == 6543
        assert config.get_bool("database.tls") is True
        assert config.get_duration("timeout") == 1.5
        assert config.get_float("database.port") == 6543.0
        assert config.get_str("database.port") == "6543"
        assert config.get_list("feature.flags") == ["a"]
        assert config.get_dict("database")["host"] == "db-env"
        assert config.get_int("missing", 3) == 3
        assert config.get_duration("missing", default=0.5) == 0.5
        assert config.get_size("missing", 10) == 10


async def test_typed_read_errors_name_the_key() -> None:
    async with layered() as config:
        with pytest.raises(MissingKey, match=r"no config value at database\.user"):
            config.get_str("database.user")
        with pytest.raises(InvalidValue) as info:
            config.get_int("database.host")
        assert info.value.detail == "config database.host is 'db-env', not an int"
        with pytest.raises(InvalidValue, match="timeout"):
            config.get_bool("timeout")
        assert isinstance(info.value, ValueError)


async def test_reads_are_copies() -> None:
    async with layered() as config:
        config.get("feature.flags").append("b")
        config.get_list("feature.flags").append("c")
        config.snapshot()["feature"]["flags"].append("d")
        assert config.get("feature.flags") == ["a"]


async def test_bind_a_section_to_a_dataclass_with_strings_coerced() -> None:
    config = Config(
        [
            {"database": {"host": "h", "replicas": ["r1"]}},
            env("APP_", environ={"APP_DATABASE__PORT": "7", "APP_DATABASE__TLS": "true"}),
        ]
    )
    async with config:
        assert config.bind("database", Database) == Database(
            host="h", port=7, tls=True, replicas=["r1"]
        )
        assert config.bind("database", DatabaseModel) == DatabaseModel(host="h", port=7)


async def test_bind_errors_name_the_bad_field_by_its_full_key() -> None:
    config = Config([{"database": {"host": "h", "port": "many", "replicas": ["a", 2]}}])
    async with config:
        with pytest.raises(InvalidValue) as info:
            config.bind("database", Database)
        assert "`database.port`" in info.value.detail
        assert "does not fit Database" in info.value.detail
        with pytest.raises(InvalidValue) as info:
            config.bind("database", DatabaseModel)
        assert "`database.port`" in info.value.detail


def test_bind_names_nested_list_items_and_missing_fields() -> None:
    with pytest.raises(InvalidValue) as info:
        bind({"host": "h", "replicas": ["a", 2]}, Database, "db")
    assert "`db.replicas[1]`" in info.value.detail
    with pytest.raises(InvalidValue) as info:
        bind({}, Database, "db")
    assert "missing required field `host`" in info.value.detail
    assert "`db`" in info.value.detail
    with pytest.raises(InvalidValue, match=r"`limits\.rps`"):
        bind({"rps": "x"}, Limits, "limits")
    assert bind({"rps": "3"}, Limits, "limits") == {"rps": 3}


async def test_an_absent_section_binds_as_empty() -> None:
    @dataclass
    class Opts:
        retries: int = 3

    async with Config([{}]) as config:
        assert config.bind("opts", Opts) == Opts()
        with pytest.raises(InvalidValue, match="missing required field `host`"):
            config.bind("database", Database)


async def test_reading_before_loading_is_an_error() -> None:
    config = Config([{"a": 1}])
    with pytest.raises(ConfigError, match="not loaded"):
        config.get("a")
    await config.load()
    assert config.get("a") == 1


async def test_a_missing_required_source_fails_the_start() -> None:
    source = ScriptedSource({})
    source.fail_load = SourceUnavailable("etcd at x is unreachable")
    with pytest.raises(SourceUnavailable, match="unreachable"):
        async with Config([{"a": 1}, source]):
            pass


async def test_an_optional_source_that_is_missing_is_logged_and_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = ScriptedSource({"a": 2}, name="etcd somewhere", optional=True)
    source.fail_load = SourceUnavailable("etcd at x is unreachable")
    with caplog.at_level(logging.WARNING, logger="micro.config"):
        async with Config([{"a": 1}, source]) as config:
            assert config.get("a") == 1
            # It comes back later (its watcher reports it): picked up.
            source.push({"a": 3})
            assert config.get("a") == 3
    assert "optional source etcd somewhere is unavailable" in caplog.text
    assert "starting without it" in caplog.text


async def test_an_optional_source_with_bad_content_still_fails_the_start() -> None:
    source = ScriptedSource({}, optional=True)
    source.fail_load = SourceInvalid("config.yaml:3:1: oops")
    with pytest.raises(SourceInvalid):
        async with Config([source]):
            pass


async def test_watch_yields_each_new_value_and_only_changes() -> None:
    source = ScriptedSource({"feature": {"flags": ["a"]}, "other": 1})
    async with Config([source]) as config:
        watch = config.watch("feature.flags")
        source.push({"feature": {"flags": ["a"]}, "other": 2})  # not this key: no wake
        source.push({"feature": {"flags": ["a", "b"]}, "other": 2})
        with anyio.fail_after(5):
            assert await watch.__anext__() == ["a", "b"]
        source.push({"other": 2})  # removed: the default
        with anyio.fail_after(5):
            assert await watch.__anext__() is None


async def test_watch_coalesces_to_the_latest_value() -> None:
    source = ScriptedSource({"n": 0})
    async with Config([source]) as config:
        watch = config.watch("n")
        for n in range(1, 50):
            source.push({"n": n})
        with anyio.fail_after(5):
            assert await watch.__anext__() == 49


async def test_watch_with_initial_and_into() -> None:
    source = ScriptedSource({"database": {"host": "a"}})
    async with Config([source]) as config:
        watch = config.watch("database", into=Database, initial=True)
        with anyio.fail_after(5):
            assert await watch.__anext__() == Database(host="a")
            source.push({"database": {"host": "b", "port": "oops"}})  # does not bind: skipped
            source.push({"database": {"host": "c", "port": "1"}})
            assert await watch.__anext__() == Database(host="c", port=1)


async def test_a_value_that_does_not_bind_is_logged_and_not_passed_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = ScriptedSource({"database": {"host": "a"}})
    async with Config([source]) as config:
        watch = config.watch("database", into=Database)
        source.push({"database": {"host": "b", "port": "oops"}})
        received: list[Database] = []

        async def read_one() -> None:
            received.append(await watch.__anext__())

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_one)
            with anyio.fail_after(5):
                while "does not fit Database" not in caplog.text:
                    await anyio.sleep(0.01)
            assert received == []
            source.push({"database": {"host": "c"}})
        assert received == [Database(host="c")]


async def test_watchers_end_when_the_config_closes() -> None:
    source = ScriptedSource({"a": 1})
    seen: list[Any] = []
    async with anyio.create_task_group() as tg:
        config = Config([source], task_group=tg)
        async with config:
            watch = config.watch("a")

            async def follow() -> None:
                async for value in watch:
                    seen.append(value)

            tg.start_soon(follow)
            source.push({"a": 2})
            with anyio.fail_after(5):
                while seen != [2]:
                    await anyio.sleep(0.01)
        # leaving the config ends the reader, so the task group can finish
    assert seen == [2]


async def test_watchers_run_under_a_given_supervisor_and_are_restarted() -> None:
    class Crashing(ScriptedSource):
        runs = 0  # per instance once incremented

        async def watch(
            self,
            changed: Changed,
            *,
            task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
        ) -> None:
            self.runs += 1
            task_status.started()
            if self.runs == 1:
                raise RuntimeError("first run crashes")
            await super().watch(changed)

    source = Crashing({"a": 1})
    async with anyio.create_task_group() as tg:
        supervisor = Supervisor(tg, initial_backoff=0.01)
        async with Config([source], task_group=supervisor) as config:
            with anyio.fail_after(5):
                await source.started.wait()
            source.push({"a": 2})
            assert config.get("a") == 2
        tg.cancel_scope.cancel()
    assert source.runs == 2


async def test_a_config_cannot_run_twice_at_once() -> None:
    async with Config([{"a": 1}]) as config:
        with pytest.raises(RuntimeError, match="already running"):
            async with config.running():
                pass


async def test_defaults_as_a_source_object_and_a_mapping_are_the_same() -> None:
    async with Config([defaults({"a": 1})]) as first, Config([{"a": 1}]) as second:
        assert first.snapshot() == second.snapshot() == {"a": 1}
