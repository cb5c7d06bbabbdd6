"""The S3 store against a real S3 server (moto's, run by the suite): the whole
conformance suite, the objects it keeps, expiry markers and their sweep, and
clear errors when the server is unreachable or goes away."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from micro.store import InvalidKey, Record, S3Store, Store, StoreOptions, from_url
from micro.store._s3api import S3Client
from micro.store.s3 import decode_name, encode_name
from micro.testing import STORE_CHECKS, StoreFactory
from micro.testing.store import check_pagination
from tests.integration.store_calls import all_calls_fail, check_cli_round_trip
from tests.servers import ServerProcess, free_port
from tests.servers_s3 import ACCESS_KEY, S3_BUCKET, SECRET_KEY, s3_url

pytestmark = pytest.mark.anyio

Check = Callable[[StoreFactory], Awaitable[None]]

#: keys of the pagination check here. moto's server spends milliseconds of Python
#: on each PUT, so the suite's 10,000 keys take minutes of the suite's time (moto's
#: speed, not the store's); 1,200 keys still cross S3's 1,000-key listing page, so
#: paging through ListObjectsV2 (continuation tokens, offsets past a page) is shown.
PAGINATION_KEYS = 1_200


def _prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("check", list(STORE_CHECKS.values()), ids=list(STORE_CHECKS))
async def test_s3_store_conforms(s3_server: ServerProcess, check: Check) -> None:
    url = s3_url(s3_server, _prefix())

    def factory() -> Store:
        return from_url(url)

    if check is check_pagination:
        await check_pagination(factory, keys=PAGINATION_KEYS)
    else:
        await check(factory)


async def _names(server: ServerProcess, prefix: str) -> list[str]:
    from botocore.credentials import Credentials

    client = S3Client(
        S3_BUCKET,
        endpoint=server.url,
        region="us-east-1",
        credentials=Credentials(ACCESS_KEY, SECRET_KEY),
        timeout=10,
    )
    await client.open()
    try:
        return [item.name async for page in client.list(prefix) for item in page]
    finally:
        await client.close()


async def test_records_are_objects_with_their_metadata(s3_server: ServerProcess) -> None:
    prefix = _prefix()
    async with S3Store(s3_url(s3_server, prefix)) as store:
        await store.write(Record("a/b", b"v", {"tag": "ü"}), database="db 1", table="t")
        await store.write(Record("c", b"w"), ttl=60, database="db 1", table="t")
        names = await _names(s3_server, prefix + "/")
        assert names[:2] == [
            f"{prefix}/db~201/t/d/{encode_name(b'a/b')}",
            f"{prefix}/db~201/t/d/{encode_name(b'c')}",
        ], names
        [marker] = names[2:]
        assert marker.startswith(f"{prefix}/db~201/t/x/") and marker.endswith(encode_name(b"c"))
        [record] = await store.read("a/b", database="db 1", table="t")
        assert record == Record("a/b", b"v", {"tag": "ü"})


def test_key_names_keep_order_and_round_trip() -> None:
    keys = [b"", b"\x00", b"\x00\x00", b"\x01", b"a", b"a\x00", b"ab", b"b", b"\xef\xbf\xbf"]
    keys += [bytes([n]) * k for n in (0, 63, 64, 200) for k in range(1, 5)]
    keys.sort()
    names = [encode_name(k) for k in keys]
    assert names == sorted(names)
    assert [decode_name(n) for n in names] == keys
    for key in keys:
        for cut in range(len(key) + 1):
            known = encode_name(key[:cut])[: cut * 8 // 6]
            assert encode_name(key).startswith(known)


@given(st.lists(st.binary(max_size=12), min_size=2, max_size=8))
def test_key_names_order_any_bytes_as_the_bytes(keys: list[bytes]) -> None:
    names = {encode_name(k): k for k in keys}
    assert [names[n] for n in sorted(names)] == sorted(set(keys))
    assert all(decode_name(n) == k for n, k in names.items())


async def test_expired_records_are_swept(s3_server: ServerProcess) -> None:
    prefix = _prefix()
    async with S3Store(s3_url(s3_server, prefix)) as store:
        expiry = time.time() + 0.2
        await store.write(Record("short", b"v"), expiry=expiry)
        await store.write(Record("rewritten", b"v"), expiry=expiry)
        await store.write(Record("rewritten", b"kept"))  # its marker is left behind
        await store.write(Record("long", b"v"), ttl=60)
        with anyio.fail_after(10):
            while await store.list() != ["long", "rewritten"]:
                await anyio.sleep(0.05)
        assert await store.sweep() == 1
        names = await _names(s3_server, prefix + "/")
        assert len([n for n in names if "/d/" in n]) == 2, names
        assert len([n for n in names if "/x/" in n]) == 1, names  # long's marker
        assert await store.read("rewritten") == [Record("rewritten", b"kept")]
        assert await store.sweep() == 0


async def test_a_services_sweeper_deletes_expired_objects_without_writes(
    s3_server: ServerProcess,
) -> None:
    import micro

    prefix = _prefix()
    url = s3_url(s3_server, prefix) + "&sweep_interval=200ms&timeout=5s"
    svc = micro.Service("s3swept", address="127.0.0.1:0", registry="memory", store=url)
    assert isinstance(svc.store, S3Store)
    assert (svc.store.sweep_interval, svc.store.timeout) == (0.2, 5.0)
    async with svc.running():
        await svc.store.write(Record("short", b"v"), ttl=0.3, database="a", table="t")
        await svc.store.write(Record("kept", b"v"), database="b")
        assert len(await _names(s3_server, prefix + "/")) == 3  # two records, one marker
        with anyio.fail_after(15):  # no write after these: the sweeper deletes the objects
            while (names := await _names(s3_server, prefix + "/")) != [
                f"{prefix}/b/micro/d/{encode_name(b'kept')}"
            ]:
                await anyio.sleep(0.1)
        assert names


async def test_sweep_all_sweeps_every_table_under_the_prefix(s3_server: ServerProcess) -> None:
    url = s3_url(s3_server, _prefix())
    expiry = time.time() + 1  # past the writes (each sweeps its table the first time)
    async with S3Store(url) as writer:
        for n in range(3):
            await writer.write(Record("k", b"v"), expiry=expiry, database=f"d{n}", table=f"t/{n}")
        await writer.write(Record("k", b"v"), ttl=60, database="d0", table="t/0")
    async with S3Store(url) as other:  # a process that never wrote to these tables
        with anyio.fail_after(10):
            while await other.list(database="d2", table="t/2"):
                await anyio.sleep(0.05)
        assert await other.sweep_all() == 2
        assert await other.sweep_all() == 0
        assert await other.list(database="d0", table="t/0") == ["k"]


async def test_an_unreachable_server_is_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    url = f"s3://k:s@bucket/p?endpoint=http://127.0.0.1:{port}"
    async with from_url(url) as store:
        await all_calls_fail(store, f"http://127.0.0.1:{port} bucket bucket is unreachable")


async def test_a_missing_bucket_is_the_servers_error(s3_server: ServerProcess) -> None:
    url = f"s3://{ACCESS_KEY}:{SECRET_KEY}@no-such-bucket/p?endpoint={s3_server.url}"
    async with from_url(url) as store:
        await all_calls_fail(store, "NoSuchBucket")


async def test_the_server_going_away(fresh_s3_server: ServerProcess) -> None:
    async with S3Store(s3_url(fresh_s3_server, _prefix())) as store:
        await store.write(Record("before", b"1"))
        fresh_s3_server.stop()
        await all_calls_fail(store, "is unreachable")


def test_s3_urls_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    store = S3Store("s3://bucket/some/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1")
    assert (store.bucket, store.prefix, store.region) == ("bucket", "some/prefix/", "eu-west-1")
    assert store.where == "http://127.0.0.1:9000 bucket bucket"
    aws = S3Store("s3://bucket")
    assert (aws.prefix, aws.region, aws.endpoint) == ("", "us-east-1", None)
    assert aws.where == "https://bucket.s3.us-east-1.amazonaws.com"
    assert isinstance(from_url("s3://bucket/p"), S3Store)
    with pytest.raises(ValueError, match="unknown options"):
        S3Store("s3://bucket?endpont=http://x")
    with pytest.raises(ValueError, match="not an s3 URL"):
        S3Store("s3:///prefix")
    with pytest.raises(ValueError, match="http:// or https://"):
        S3Store("s3://bucket?endpoint=ftp://x")
    options = S3Store("s3://bucket?timeout=2500ms&sweep_interval=5m")
    assert (options.timeout, options.sweep_interval) == (2.5, 300.0)
    assert S3Store("s3://bucket?timeout=2", timeout=3).timeout == 3.0
    with pytest.raises(ValueError, match="timeout= in the store URL is 'x', not a duration"):
        S3Store("s3://bucket?timeout=x")
    with pytest.raises(ValueError, match="sweep_interval must be a positive"):
        S3Store("s3://bucket?sweep_interval=-1s")
    with pytest.raises(ValueError, match="2 KiB"):
        S3Store("s3://bucket", options=StoreOptions(max_metadata_size=64 * 1024))


async def test_a_key_too_long_for_s3_is_invalid(s3_server: ServerProcess) -> None:
    long_prefix = "p" * 700
    async with S3Store(s3_url(s3_server, long_prefix)) as store:
        with pytest.raises(InvalidKey, match="over S3's 1024"):
            await store.write(Record("k" * 500, b"v"))
        await store.write(Record("short", b"v"))
        assert await store.list() == ["short"]


async def test_a_service_and_the_micro_command_use_it(s3_server: ServerProcess) -> None:
    import micro
    from tests.integration.cli.test_cli_local import micro_cmd

    url = s3_url(s3_server, _prefix())
    svc = micro.Service("s3stored", address="127.0.0.1:0", registry="memory", store=url)
    assert isinstance(svc.store, S3Store)
    by_flag = micro.Service("s3flag", registry="memory", argv=[f"--micro-store={url}"], environ={})
    assert isinstance(by_flag.store, S3Store)
    assert (by_flag.store.bucket, by_flag.store.prefix) == (svc.store.bucket, svc.store.prefix)
    async with svc.running():
        await svc.store.write(Record("user/1", b"alice"))

    def cli(*args: str) -> tuple[int, str]:
        done = micro_cmd("store", *args, env={"MICRO_STORE": url})
        return done.returncode, done.stdout

    await check_cli_round_trip(cli)
    async with S3Store(url) as store:
        assert await store.list() == ["user/2"]
