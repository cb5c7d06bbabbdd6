"""Config in a real etcd: keys as a tree, the watch, bad values, outages and restarts."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from micro.config import Config, ConfigWatch, SourceInvalid, SourceUnavailable, env, etcd, file
from micro.etcd import EtcdClient
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.anyio

#: seconds within which a change in etcd must be seen (it takes milliseconds)
SEEN_WITHIN = 10.0
#: reconnection backoff cap for these tests, so recovery is quick
MAX_BACKOFF = 0.5


def unique_prefix() -> str:
    return f"/test/config/{uuid.uuid4().hex}"


async def put(url: str, values: dict[str, str]) -> None:
    async with EtcdClient(url) as client:
        for key, value in values.items():
            await client.put(key.encode(), value.encode())


async def delete(url: str, key: str) -> None:
    async with EtcdClient(url) as client:
        await client.delete(key.encode())


async def until(check: Callable[[], bool], within: float = SEEN_WITHIN) -> None:
    with anyio.fail_after(within):
        while not check():
            await anyio.sleep(0.01)


async def next_value(watch: ConfigWatch[Any]) -> Any:
    with anyio.fail_after(SEEN_WITHIN):
        return await watch.__anext__()


async def test_keys_under_the_prefix_are_a_tree(etcd_server: ServerProcess) -> None:
    prefix = unique_prefix()
    await put(
        etcd_server.url,
        {
            prefix: '{"database": {"host": "from-doc", "port": 1}, "name": "doc"}',
            f"{prefix}/database/host": "db1",  # not JSON: a plain string
            f"{prefix}/database/port": "5432",
            f"{prefix}/feature/flags": '["a", "b"]',
            f"{prefix}/feature/on": "true",
            f"{prefix}x/not/mine": "1",  # a sibling prefix is not the prefix
        },
    )
    async with Config([etcd(prefix, endpoint=etcd_server.url)]) as config:
        assert config.snapshot() == {
            "database": {"host": "db1", "port": 5432},
            "name": "doc",
            "feature": {"flags": ["a", "b"], "on": True},
        }


async def test_changes_and_deletes_are_watched(etcd_server: ServerProcess) -> None:
    prefix = unique_prefix()
    await put(etcd_server.url, {f"{prefix}/feature/flags": '["a"]'})
    config = Config([{"feature": {"flags": []}}, etcd(prefix, endpoint=etcd_server.url)])
    async with config:
        flags = config.watch("feature.flags")
        await put(etcd_server.url, {f"{prefix}/feature/flags": '["a", "b"]'})
        assert await next_value(flags) == ["a", "b"]
        await delete(etcd_server.url, f"{prefix}/feature/flags")
        assert await next_value(flags) == []  # the default shows again
        await put(etcd_server.url, {f"{prefix}/feature": '{"flags": ["c"]}'})
        assert await next_value(flags) == ["c"]


async def test_etcd_overrides_file_and_environment(
    etcd_server: ServerProcess, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    path = tmp_path / "config.yaml"
    path.write_text("database:\n  host: file\n  port: 1\n  user: file\n")
    await put(etcd_server.url, {f"{prefix}/database/host": "etcd"})
    config = Config(
        [
            {"database": {"host": "default", "pool": 5}},
            file(path),
            env("APP_", environ={"APP_DATABASE__HOST": "env", "APP_DATABASE__PORT": "2"}),
            etcd(prefix, endpoint=etcd_server.url),
        ]
    )
    async with config:
        assert config.get("database") == {"host": "etcd", "port": "2", "user": "file", "pool": 5}


async def test_a_bad_value_is_logged_and_the_last_good_one_stays(
    etcd_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_prefix()
    key = f"{prefix}/limits"
    await put(etcd_server.url, {key: '{"rps": 10}'})
    caplog.set_level(logging.INFO, logger="micro.config")
    async with Config([etcd(prefix, endpoint=etcd_server.url)]) as config:
        limits = config.watch("limits")
        await put(etcd_server.url, {key: '{"rps": 20,'})
        await until(lambda: f"key {key}" in caplog.text and "invalid JSON" in caplog.text)
        assert config.get("limits") == {"rps": 10}
        await put(etcd_server.url, {key: '{"rps": 30}'})
        assert await next_value(limits) == {"rps": 30}


async def test_a_bad_value_at_start_fails_the_start(etcd_server: ServerProcess) -> None:
    prefix = unique_prefix()
    await put(etcd_server.url, {f"{prefix}/limits": "[1, 2"})
    with pytest.raises(SourceInvalid, match=r"limits:1:\d+: invalid JSON"):
        async with Config([etcd(prefix, endpoint=etcd_server.url)]):
            pass


async def test_required_and_unreachable_fails_the_start() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceUnavailable, match="unreachable"):
        async with Config([etcd("/config/app", endpoint=endpoint)]):
            pass


async def test_optional_and_unreachable_at_start_is_picked_up_when_etcd_appears(
    fresh_etcd_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_prefix()
    await put(fresh_etcd_server.url, {f"{prefix}/level": '"warning"'})
    await anyio.to_thread.run_sync(fresh_etcd_server.stop)
    caplog.set_level(logging.INFO, logger="micro.config")
    config = Config(
        [
            {"level": "info"},
            etcd(prefix, endpoint=fresh_etcd_server.url, optional=True, max_backoff=MAX_BACKOFF),
        ]
    )
    async with config:
        assert config.get("level") == "info"  # started on the others ...
        assert "optional source etcd" in caplog.text and "starting without it" in caplog.text
        await anyio.to_thread.run_sync(fresh_etcd_server.start)
        # ... and etcd's values arrive once it answers: what it held, then new ones.
        await until(lambda: config.get("level") == "warning")
        await until(lambda: "is back; resynced and watching" in caplog.text)
        await put(fresh_etcd_server.url, {f"{prefix}/level": '"error"'})
        await until(lambda: config.get("level") == "error")


async def test_a_broken_watch_reconnects_and_resyncs(
    fresh_etcd_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = unique_prefix()
    url = fresh_etcd_server.url
    await put(url, {f"{prefix}/n": "1"})
    caplog.set_level(logging.INFO, logger="micro.config")
    source = etcd(prefix, endpoint=url, max_backoff=MAX_BACKOFF)
    async with Config([source]) as config:
        values = config.watch("n")
        await put(url, {f"{prefix}/n": "2"})
        assert await next_value(values) == 2
        for n in (3, 4):
            # etcd goes away under the watch and comes back; a change made right
            # away (likely before the watcher is back) is found by the resync.
            await anyio.to_thread.run_sync(fresh_etcd_server.restart)
            await put(url, {f"{prefix}/n": str(n)})
            assert await next_value(values) == n
        await put(url, {f"{prefix}/other": "x"})
        await until(lambda: config.get("other") == "x")
    assert "is back; resynced and watching" in caplog.text


async def test_a_shared_client_stays_open_for_its_other_users(etcd_server: ServerProcess) -> None:
    prefix = unique_prefix()
    await put(etcd_server.url, {f"{prefix}/a": "1"})
    async with EtcdClient(etcd_server.url) as client:
        async with Config([etcd(prefix, client=client)]) as config:
            assert config.get("a") == 1
        # The config has let go of the client; its other users still have it.
        await client.put(f"{prefix}/b".encode(), b"2")
        assert (await client.get(f"{prefix}/b".encode())) is not None
