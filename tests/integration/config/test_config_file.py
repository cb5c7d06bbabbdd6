"""Config files on a real filesystem, watched with watchfiles: reloads, bad edits, bursts."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from micro.config import Config, ConfigWatch, SourceInvalid, SourceUnavailable, env, file
from micro.supervisor import Supervisor

pytestmark = pytest.mark.anyio

#: seconds within which a change on disk must be seen (it takes ~0.1 s)
SEEN_WITHIN = 10.0

DOCS = {
    "yaml": ("feature:\n  flags: [{flags}]\n  limit: {limit}\n", "feature:\n  flags: [a\n"),
    "json": (
        '{{"feature": {{"flags": [{quoted}], "limit": {limit}}}}}\n',
        '{"feature": {"flags": ["a"],\n  "limit": }\n',
    ),
    "toml": ("[feature]\nflags = [{quoted}]\nlimit = {limit}\n", "[feature]\nflags = [\n"),
}


def doc(fmt: str, flags: list[str], limit: int = 1) -> str:
    quoted = ", ".join(f'"{f}"' for f in flags)
    return DOCS[fmt][0].format(flags=", ".join(flags), quoted=quoted, limit=limit)


def replace(path: Path, text: str) -> None:
    """Save the way editors and deploy tools do: a temp file renamed over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def until(check: Callable[[], bool], within: float = SEEN_WITHIN) -> None:
    with anyio.fail_after(within):
        while not check():
            await anyio.sleep(0.01)


async def next_value(watch: ConfigWatch[Any]) -> Any:
    with anyio.fail_after(SEEN_WITHIN):
        return await watch.__anext__()


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
async def test_each_format_loads_and_reloads_on_an_edit(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"config.{fmt}"
    path.write_text(doc(fmt, ["a"]))
    async with Config([file(path)]) as config:
        assert config.get("feature") == {"flags": ["a"], "limit": 1}
        flags = config.watch("feature.flags")
        path.write_text(doc(fmt, ["a", "b"]))  # edited in place
        assert await next_value(flags) == ["a", "b"]
        replace(path, doc(fmt, ["c"]))  # replaced by a rename
        assert await next_value(flags) == ["c"]
        assert config.get_int("feature.limit") == 1


async def test_sources_layer_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("database:\n  host: file-host\n  port: 5432\nname: from-file\n")
    config = Config(
        [
            {"database": {"host": "default", "user": "app"}, "name": "default"},
            file(path),
            env("APP_", environ={"APP_DATABASE__HOST": "env-host"}),
        ]
    )
    async with config:
        assert config.snapshot() == {
            "database": {"host": "env-host", "port": 5432, "user": "app"},
            "name": "from-file",
        }
        hosts = config.watch("database.port")
        path.write_text("database:\n  host: new-file-host\n  port: 6543\n")
        assert await next_value(hosts) == 6543
        # The file changed under the env override, which still wins; the file's
        # name went away, so the default shows again.
        assert config.get("database.host") == "env-host"
        assert config.get("name") == "default"


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
async def test_an_invalid_edit_keeps_the_last_good_config(
    tmp_path: Path, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / f"config.{fmt}"
    path.write_text(doc(fmt, ["a"]))
    caplog.set_level(logging.INFO, logger="micro.config")
    async with Config([file(path)]) as config:
        flags = config.watch("feature.flags")
        path.write_text(DOCS[fmt][1])
        # The error is logged with the file and line ...
        await until(lambda: f"config.{fmt}:" in caplog.text and "last good" in caplog.text)
        error = next(r for r in caplog.records if r.levelno == logging.ERROR)
        assert f"{path}:2:" in error.getMessage() or f"{path}:3:" in error.getMessage()
        # ... the last good config stays ...
        assert config.get("feature.flags") == ["a"]
        # ... and the next value a watcher sees is the next good edit, not garbage.
        path.write_text(doc(fmt, ["b"], limit=2))
        assert await next_value(flags) == ["b"]
        assert config.get_int("feature.limit") == 2


async def test_rapid_successive_edits_settle_on_the_last_one(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(doc("yaml", ["v0"]))
    seen: list[Any] = []
    async with Config([file(path)]) as config:
        flags = config.watch("feature.flags")

        async def follow() -> None:
            async for value in flags:
                seen.append(value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            for n in range(1, 60):
                # In place and by rename, with and without a pause: bursts the
                # watcher has to group, and writes it may catch half done.
                if n % 2:
                    path.write_text(doc("yaml", [f"v{n}"], limit=n))
                else:
                    await anyio.to_thread.run_sync(replace, path, doc("yaml", [f"v{n}"], limit=n))
                if n % 10 == 0:
                    await anyio.sleep(0.02)
            path.write_text(doc("yaml", ["final"], limit=1000))
            await until(lambda: config.get("feature.flags") == ["final"])
            await until(lambda: bool(seen) and seen[-1] == ["final"])
            tg.cancel_scope.cancel()
        assert config.get_int("feature.limit") == 1000
        # Readers only ever saw whole versions, in order.
        versions = [v[0] for v in seen]
        numbers = [int(v[1:]) for v in versions[:-1]]
        assert numbers == sorted(numbers)


async def test_an_optional_file_may_be_missing_and_is_picked_up_when_created(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "conf.d" / "app" / "override.toml"
    caplog.set_level(logging.INFO, logger="micro.config")
    config = Config([{"limit": 1}, file(path, optional=True)])
    async with config:
        assert config.get("limit") == 1
        assert f"optional source file {path} is unavailable" in caplog.text
        assert "starting without it" in caplog.text
        # Even its directories are missing; all appear while the service runs.
        limits = config.watch("limit")
        path.parent.parent.mkdir()
        await anyio.sleep(0.2)  # let the watcher move on to the new directory
        path.parent.mkdir()
        replace(path, "limit = 2\n")
        started = time.monotonic()
        assert await next_value(limits) == 2
        assert time.monotonic() - started < 3.0  # seen by watching, not by polling


async def test_a_required_file_that_is_missing_fails_the_start(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="does not exist"):
        async with Config([file(tmp_path / "nope.yaml")]):
            pass


async def test_a_file_invalid_at_start_fails_the_start_naming_file_and_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("a: 1\nb: [\n")
    for optional in (False, True):
        with pytest.raises(SourceInvalid) as info:
            async with Config([file(path, optional=optional)]):
                pass
        assert info.value.detail.startswith(f"{path}:3:")


async def test_a_deleted_file_keeps_its_values_until_it_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"a": 1}')
    caplog.set_level(logging.INFO, logger="micro.config")
    async with Config([file(path)]) as config:
        values = config.watch("a")
        path.unlink()
        await until(lambda: "was deleted" in caplog.text)
        assert config.get("a") == 1
        path.write_text('{"a": 2}')
        assert await next_value(values) == 2


async def test_an_empty_write_is_not_taken_as_an_empty_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("a: 1\n")
    caplog.set_level(logging.INFO, logger="micro.config")
    async with Config([file(path)]) as config:
        values = config.watch("a")
        path.write_text("")  # what open(path, "w") leaves before the write
        await until(lambda: "is empty" in caplog.text)
        assert config.get("a") == 1
        path.write_text("a: 2\n")
        assert await next_value(values) == 2


async def test_watchers_stop_promptly_in_a_supervised_task_group(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("a: 1\n")
    async with (
        anyio.create_task_group() as tg,
        Config([file(path)], task_group=Supervisor(tg)) as config,
    ):
        values = config.watch("a")
        path.write_text("a: 2\n")
        assert await next_value(values) == 2
        await anyio.sleep(0.3)  # let the watcher settle into its long wait for changes
        started = time.monotonic()
    # Leaving the config stopped its watcher, so the task group had nothing left to wait for.
    assert time.monotonic() - started < 2.0
