"""The PostgreSQL store against a real PostgreSQL: the whole conformance suite,
a server restart mid-run, a server that stays down, and what it keeps in SQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable

import anyio
import pytest

from micro.errors import BadRequest
from micro.store import PostgresStore, Record, Store, StoreUnavailable, from_url
from micro.testing import STORE_CHECKS, StoreFactory
from tests.integration.store_calls import all_calls_fail, check_cli_round_trip
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.anyio

Check = Callable[[StoreFactory], Awaitable[None]]


def _db() -> str:
    return f"pg-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("check", list(STORE_CHECKS.values()), ids=list(STORE_CHECKS))
async def test_postgres_store_conforms(postgres_server: ServerProcess, check: Check) -> None:
    def factory() -> Store:
        return from_url(postgres_server.url)

    await check(factory)


async def test_an_unreachable_server_is_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    async with PostgresStore(f"postgres://u@127.0.0.1:{port}/db", timeout=2) as store:
        details = await all_calls_fail(store, f"127.0.0.1:{port}/db")
    assert all("refused" in detail.lower() for detail in details), details


async def test_a_restart_mid_run_and_a_server_that_stays_down(
    fresh_postgres_server: ServerProcess,
) -> None:
    db = _db()
    async with PostgresStore(fresh_postgres_server.url, timeout=2) as store:
        await store.write(Record("before", b"1", {"n": 1}), database=db)

        async def writer(n: int) -> None:
            await store.write(Record(f"w{n:02d}", b"x"), database=db)

        async with anyio.create_task_group() as tg:  # a pool of live connections
            for n in range(20):
                tg.start_soon(writer, n)
        fresh_postgres_server.restart()  # same port and data: every pooled connection is dead
        # A lost connection is retried on a new one: the first call after works.
        await store.write(Record("after", b"2"), database=db)
        assert await store.read("before", database=db) == [Record("before", b"1", {"n": 1})]
        assert len(await store.list(database=db)) == 22

        fresh_postgres_server.stop()
        details = await all_calls_fail(store, fresh_postgres_server.url.split("@")[1])
        assert all("refused" in detail.lower() for detail in details), details

        fresh_postgres_server.start()
        with anyio.fail_after(15):
            assert await store.list(prefix="a", database=db) == ["after"]


async def test_rows_are_in_one_sql_table_per_namespace(postgres_server: ServerProcess) -> None:
    import psycopg

    db = _db()
    async with PostgresStore(postgres_server.url) as store:
        await store.write(Record("k\x00\ud800", b"v", {"tag": "ü"}), ttl=60, database=db)
        await store.write(Record("k", b"v"), database=db, table="Other Table/2")
        with psycopg.connect(postgres_server.url, autocommit=True) as con:
            rows = con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE %s "
                "ORDER BY table_name",
                (f"micro_store_{db.replace('-', '_')}%",),
            ).fetchall()
            assert len(rows) == 2, rows
            assert rows[1][0].startswith(f"micro_store_{db.replace('-', '_')}_other_table_2_")
            table = rows[0][0]
            key, metadata, expiry = con.execute(
                f'SELECT key, metadata, expiry FROM "{table}"'
            ).fetchone()  # type: ignore[misc]
            assert bytes(key) == "k\x00\ud800".encode("utf-8", "surrogatepass")
            assert metadata == {"tag": "ü"} and expiry is not None


async def test_sweep_deletes_expired_rows(postgres_server: ServerProcess) -> None:
    db = _db()
    async with PostgresStore(postgres_server.url) as store:
        await store.write(Record("short", b"v"), ttl=0.2, database=db)
        await store.write(Record("long", b"v"), ttl=60, database=db)
        with anyio.fail_after(10):
            while await store.list(database=db) != ["long"]:
                await anyio.sleep(0.05)
        assert await store.sweep(database=db) == 1
        assert await store.sweep(database=db) == 0


def _rows(url: str, db: str) -> int:
    """Rows in the SQL tables of database ``db``, expired or not, seen through SQL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE %s",
            (f"micro_store_{db.replace('-', '_')}%",),
        ).fetchall()
        return sum(
            con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]  # type: ignore[index]
            for (name,) in tables
        )


async def test_a_services_sweeper_deletes_expired_rows_without_writes(
    postgres_server: ServerProcess,
) -> None:
    import micro

    db = _db()
    url = f"{postgres_server.url}?sweep_interval=200ms&timeout=5s"
    svc = micro.Service("pgswept", address="127.0.0.1:0", registry="memory", store=url)
    assert isinstance(svc.store, PostgresStore)
    assert (svc.store.sweep_interval, svc.store.timeout) == (0.2, 5.0)
    async with svc.running():
        await svc.store.write(Record("short", b"v"), ttl=0.3, database=db)
        await svc.store.write(Record("kept", b"v"), database=db, table="other")
        assert await anyio.to_thread.run_sync(_rows, postgres_server.url, db) == 2
        with anyio.fail_after(15):  # no write after these: the sweeper deletes the row
            while await anyio.to_thread.run_sync(_rows, postgres_server.url, db) != 1:
                await anyio.sleep(0.1)
        assert await svc.store.list(database=db, table="other") == ["kept"]


async def test_the_sweeper_outlives_a_server_that_is_down(
    fresh_postgres_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    import micro

    db = _db()
    server = fresh_postgres_server
    url = f"{server.url}?sweep_interval=100ms&timeout=2s"
    svc = micro.Service("pgsweepdown", address="127.0.0.1:0", registry="memory", store=url)
    async with svc.running():
        await svc.store.write(Record("k", b"v"), database=db)
        server.stop()
        with anyio.fail_after(15):  # sweeps fail, are logged, and the service goes on
            while not any(
                "sweeping the postgres store failed" in r.message for r in caplog.records
            ):
                await anyio.sleep(0.05)
        server.start()
        with anyio.fail_after(15):
            while True:
                try:
                    await svc.store.write(Record("short", b"v"), ttl=0.2, database=db)
                    break
                except StoreUnavailable:
                    await anyio.sleep(0.1)
            while await anyio.to_thread.run_sync(_rows, server.url, db) != 1:
                await anyio.sleep(0.1)  # the sweeper deletes the expired row again
        assert await svc.store.list(database=db) == ["k"]


async def test_sweep_all_sweeps_tables_other_processes_wrote(
    postgres_server: ServerProcess,
) -> None:
    db = _db()
    expiry = time.time() + 1  # past the writes (each sweeps its table the first time)
    async with PostgresStore(postgres_server.url) as writer:
        for n in range(3):
            await writer.write(Record(f"k{n}", b"v"), expiry=expiry, database=db, table=f"t{n}")
    async with PostgresStore(postgres_server.url) as other:
        with anyio.fail_after(10):
            while await other.list(database=db, table="t2"):
                await anyio.sleep(0.05)
        assert await other.sweep_all() >= 3  # other tests' expired rows go too
        assert await anyio.to_thread.run_sync(_rows, postgres_server.url, db) == 0


async def test_metadata_postgres_cannot_hold_is_a_bad_request(
    postgres_server: ServerProcess,
) -> None:
    db = _db()
    async with PostgresStore(postgres_server.url) as store:
        with pytest.raises(BadRequest, match="NUL"):
            await store.write(Record("k", b"v", {"x": ["a\x00b"]}), database=db)
        assert await store.list(database=db) == []


def test_postgres_urls() -> None:
    store = PostgresStore("postgresql://user:secret@db.example/app?sslmode=require")
    assert store.address == "db.example:5432/app"
    assert "secret" not in store.address
    for url in ("cockroachdb://root@crdb:26257/defaultdb", "cockroachdb://root@crdb/defaultdb"):
        assert PostgresStore(url).address == "crdb:26257/defaultdb"
    assert isinstance(from_url("postgres://h/db"), PostgresStore)
    assert isinstance(from_url("cockroachdb://h/db"), PostgresStore)
    with pytest.raises(ValueError, match="not a postgres URL"):
        PostgresStore("mysql://h/db")
    with pytest.raises(ValueError, match="table_prefix"):
        PostgresStore("postgres://h/db", table_prefix="Bad-Prefix")
    # The store's own options leave the URL libpq sees; the arguments win over them.
    store = PostgresStore("postgres://h/db?sslmode=disable&timeout=1.5s&sweep_interval=2m")
    assert (store.timeout, store.sweep_interval) == (1.5, 120.0)
    assert "timeout" not in store._conninfo and "sslmode=disable" in store._conninfo
    assert PostgresStore("postgres://h/db?timeout=3", timeout=4).timeout == 4.0
    assert PostgresStore("postgres://h/db").timeout == 10.0
    with pytest.raises(ValueError, match="timeout= in the store URL is 'soon', not a duration"):
        PostgresStore("postgres://h/db?timeout=soon")
    with pytest.raises(ValueError, match="sweep_interval must be a positive"):
        PostgresStore("postgres://h/db?sweep_interval=0s")


async def test_a_service_and_the_micro_command_use_it(postgres_server: ServerProcess) -> None:
    import micro
    from tests.integration.cli.test_cli_local import micro_cmd

    db = _db()
    environ = {"MICRO_STORE": postgres_server.url}
    svc = micro.Service("pgstored", address="127.0.0.1:0", registry="memory", environ=environ)
    assert isinstance(svc.store, PostgresStore)
    by_flag = micro.Service(
        "pgflag", registry="memory", argv=[f"--micro-store={postgres_server.url}"], environ={}
    )
    assert isinstance(by_flag.store, PostgresStore)
    assert by_flag.store.address == svc.store.address
    async with svc.running():
        await svc.store.write(Record("user/1", b"alice"), database=db)

    def cli(*args: str) -> tuple[int, str]:
        done = micro_cmd("--micro-store", postgres_server.url, "store", *args, "--database", db)
        return done.returncode, done.stdout

    await check_cli_round_trip(cli)
    async with PostgresStore(postgres_server.url) as store:
        assert await store.list(database=db) == ["user/2"]
