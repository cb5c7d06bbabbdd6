"""Store figures: reads/s and writes/s of small records, per backend, in one run.

    python benchmarks/store.py [--duration 1] [--rounds 3] [--concurrency 64] [--loop asyncio,trio]
                               [--etcd http://127.0.0.1:2379] [--redis redis://127.0.0.1:6379/0]
                               [--postgres postgres://user@127.0.0.1:5432/db]
                               [--s3 's3://bucket/prefix?endpoint=http://127.0.0.1:9000']

Each backend (memory, file, etcd, redis, postgres, s3) is measured with one caller doing
one operation after another, and with ``--concurrency`` callers at once:
writes of new 16-byte keys with 100-byte values, then exact reads of keys
written before. The reference for the file store is plain ``sqlite3`` doing
the same durable writes in this process, with no event loop and no threads:
one connection, WAL, ``synchronous=FULL``, one commit per write (and point
reads on that connection), in every round next to the rest. The file store
aims at no less than half of its writes/s; it gets far past that by committing
concurrent writes together.

etcd and Redis are started on free loopback ports from their Debian packages
(``etcd-server``, ``redis-server``) unless URLs are given, and so is PostgreSQL
(``postgresql``: ``initdb`` and ``postgres`` in a temp dir, as ``nobody`` when
run as root, with its default durable settings: fsync, synchronous commit). S3
is moto's standalone server (``pip install 'moto[server]'``) unless a URL is
given; moto keeps objects in its memory and spends milliseconds of Python on
each request, so its row shows moto's speed and the store's overhead, not
S3's. A backend whose server is neither given nor installed is skipped with
the reason.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from micro.store import (  # noqa: E402
    EtcdStore,
    FileStore,
    MemoryStore,
    Record,
    RedisStore,
    Store,
    from_url,
)
from micro.store import file as file_store  # noqa: E402

VALUE = b"v" * 100
#: keys written before the read measurements (by 64 writers)
READ_KEYS = 2048


@dataclass
class Row:
    system: str
    loop: str
    callers: int
    writes: float | None = None
    reads: float | None = None


# -- servers -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(ready: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


@contextmanager
def _etcd(workdir: str) -> Iterator[str]:
    port, peer = _free_port(), _free_port()
    url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
    argv = ["etcd", "--name=b", f"--data-dir={workdir}/etcd", f"--listen-client-urls={url}"]
    argv += [f"--advertise-client-urls={url}", f"--listen-peer-urls={peer_url}"]
    argv += [f"--initial-advertise-peer-urls={peer_url}", f"--initial-cluster=b={peer_url}"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def ready() -> bool:
            try:
                return httpx.get(url + "/health", timeout=1, trust_env=False).status_code == 200
            except httpx.HTTPError:
                return False

        _wait(ready, "etcd")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def _redis(workdir: str) -> Iterator[str]:
    port = _free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", workdir]
    argv += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def ready() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        _wait(ready, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def _postgres_binaries() -> tuple[str, str] | None:
    """(initdb, postgres) of the newest PostgreSQL installed, or None."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True):
        initdb, postgres = os.path.join(folder, "initdb"), os.path.join(folder, "postgres")
        if os.path.exists(initdb) and os.path.exists(postgres):
            return initdb, postgres
    initdb_path, postgres_path = shutil.which("initdb"), shutil.which("postgres")
    return (initdb_path, postgres_path) if initdb_path and postgres_path else None


def _version(folder: str) -> list[int]:
    return [int(x) for x in Path(folder).parent.name.split(".") if x.isdigit()]


@contextmanager
def _postgres(workdir: str) -> Iterator[str]:
    binaries = _postgres_binaries()
    assert binaries is not None
    initdb, postgres = binaries
    # PostgreSQL refuses to run as root: then it runs as nobody, in a dir nobody owns.
    user: dict[str, Any] = {}
    folder = tempfile.mkdtemp(prefix="micro-bench-pg-")
    if os.geteuid() == 0:
        entry = pwd.getpwnam("nobody")
        user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    data = os.path.join(folder, "data")
    subprocess.run(
        [initdb, "-D", data, "-U", "postgres", "--auth=trust", "-EUTF8", "--no-locale"],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        **user,
    )
    port = _free_port()
    argv = [postgres, "-D", data, "-k", folder, "-h", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder, **user
    )
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    try:

        def ready() -> bool:
            import psycopg

            try:
                with psycopg.connect(url, connect_timeout=1):
                    return True
            except psycopg.Error:
                return False

        _wait(ready, "postgres")
        yield url
    finally:
        process.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
        process.wait(20)
        shutil.rmtree(folder, ignore_errors=True)


#: the bucket the benchmark makes in moto, and the credentials it signs with
S3_BUCKET, S3_KEY, S3_SECRET = "micro-bench", "bench-key", "bench-secret"


@contextmanager
def _moto(workdir: str) -> Iterator[str]:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def ready() -> bool:
            try:
                httpx.get(endpoint, timeout=1, trust_env=False)
                return True
            except httpx.HTTPError:
                return False

        _wait(ready, "moto")
        request = AWSRequest("PUT", f"{endpoint}/{S3_BUCKET}", data=b"")
        S3SigV4Auth(Credentials(S3_KEY, S3_SECRET), "s3", "us-east-1").add_auth(request)
        made = httpx.put(request.url, headers=dict(request.headers), trust_env=False)
        made.raise_for_status()
        yield f"s3://{S3_KEY}:{S3_SECRET}@{S3_BUCKET}/bench?endpoint={endpoint}"
    finally:
        process.terminate()
        process.wait(10)


def _missing_postgres() -> str | None:
    if importlib.util.find_spec("psycopg") is None:
        return "psycopg is not installed (pip install 'micro-runtime[postgres]')"
    if _postgres_binaries() is None:
        return "PostgreSQL's initdb and postgres are not installed (Debian: postgresql)"
    return None


def _missing_moto() -> str | None:
    if importlib.util.find_spec("botocore") is None:
        return "botocore is not installed (pip install 'micro-runtime[s3]')"
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        return "moto's server is not installed (pip install 'moto[server]')"
    return None


def _missing_binary(binary: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        return None if shutil.which(binary) else f"`{binary}` is not installed"

    return missing


# -- measurements ----------------------------------------------------------------


async def _rate(callers: int, duration: float, op: Callable[[int, int], Awaitable[None]]) -> float:
    """Operations per second of ``callers`` closed loops over ``duration`` seconds."""
    done = 0
    deadline = anyio.current_time() + duration

    async def caller(n: int) -> None:
        nonlocal done
        i = 0
        while anyio.current_time() < deadline:
            await op(n, i)
            i += 1
            done += 1

    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        for n in range(callers):
            tg.start_soon(caller, n)
    return done / (anyio.current_time() - started)


async def measure(
    name: str, factory: Callable[[], Store], loop: str, args: argparse.Namespace
) -> list[Row]:
    rows = []
    run = f"{loop}-{time.monotonic_ns()}"  # a database of its own per measurement
    async with factory() as store:
        for callers in (1, args.concurrency):
            db = f"{run}-{callers}"

            async def write(n: int, i: int, db: str = db) -> None:
                await store.write(Record(f"w{n:03d}-{i:09d}", VALUE), database=db)

            async def prepare(n: int, i: int, db: str = db) -> None:
                await store.write(Record(f"r{n * (READ_KEYS // 64) + i:09d}", VALUE), database=db)

            async def read(n: int, i: int, db: str = db) -> None:
                await store.read(f"r{(n * 7919 + i) % READ_KEYS:09d}", database=db)

            writes = await _rate(callers, args.duration, write)
            await _each(64, READ_KEYS // 64, prepare)
            reads = await _rate(callers, args.duration, read)
            rows.append(Row(name, loop, callers, writes, reads))
            print(
                f"  {name:<8} {loop:<8} {callers:>3} callers: {writes:9.0f} writes/s "
                f"{reads:9.0f} reads/s",
                file=sys.stderr,
            )
    return rows


async def _each(callers: int, count: int, op: Callable[[int, int], Awaitable[None]]) -> None:
    async def caller(n: int) -> None:
        for i in range(count):
            await op(n, i)

    async with anyio.create_task_group() as tg:
        for n in range(callers):
            tg.start_soon(caller, n)


def sqlite_reference(path: str, duration: float) -> Row:
    """Plain sqlite3 doing the file store's durable writes: its table and upsert, WAL,
    synchronous=FULL, one commit per write, one connection, no threads.

    The file is kept between rounds and written for a while before measuring,
    as the store's is, so neither is timed while its WAL file is still growing.
    """
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.executescript(file_store._SCHEMA)

    def write(n: int) -> None:
        con.execute("BEGIN IMMEDIATE")
        con.execute(file_store._UPSERT, (b"db", b"t", f"w{n:09d}".encode(), VALUE, b"", None))
        con.execute("COMMIT")

    started = time.perf_counter()
    while time.perf_counter() - started < duration / 2:  # warm-up
        write(0)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < duration:
        write(count)
        count += 1
    writes = count / (time.perf_counter() - started)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < duration:
        key = f"w{count % 1000:09d}".encode()
        con.execute(
            "SELECT value, metadata, expiry FROM records WHERE db = ? AND tbl = ? AND key = ? "
            "AND (expiry IS NULL OR expiry > ?)",
            (b"db", b"t", key, time.time()),
        ).fetchall()
        count += 1
    reads = count / (time.perf_counter() - started)
    con.close()
    return Row("sqlite3", "-", 1, writes, reads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--concurrency", type=int, default=64, help="callers at once")
    parser.add_argument("--loop", default="asyncio,trio", help="event loops to run on")
    parser.add_argument("--etcd", help="etcd URL (default: start one)")
    parser.add_argument("--redis", help="redis URL (default: start one)")
    parser.add_argument("--postgres", help="PostgreSQL URL (default: start one)")
    parser.add_argument("--s3", help="S3 store URL (default: start moto's server)")
    parser.add_argument("--only", help="backends to run, e.g. memory,file")
    args = parser.parse_args()
    only = set((args.only or "memory,file,etcd,redis,postgres,s3").split(","))

    rows: list[Row] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, Callable[[], Store]]] = []
        if "memory" in only:
            memory = MemoryStore()
            backends.append(("memory", lambda: memory))
        if "file" in only:
            backends.append(("file", lambda: FileStore(os.path.join(tmp, "store.db"))))
        servers: list[tuple[str, str | None, Callable[[str], Any]]] = []
        for name, given, missing, start in (
            ("etcd", args.etcd, _missing_binary("etcd"), _etcd),
            ("redis", args.redis, _missing_binary("redis-server"), _redis),
            ("postgres", args.postgres, _missing_postgres, _postgres),
            ("s3", args.s3, _missing_moto, _moto),
        ):
            if name not in only:
                continue
            if given is None and (reason := missing()) is not None:
                skipped.append(f"{name}: {reason} and no URL was given")
                continue
            servers.append((name, given, start))
        with _started(servers, tmp) as urls:
            if "etcd" in urls:
                backends.append(("etcd", lambda: EtcdStore(urls["etcd"])))
            if "redis" in urls:
                backends.append(("redis", lambda: RedisStore(urls["redis"])))
            for name in ("postgres", "s3"):
                if name in urls:
                    backends.append((name, lambda url=urls[name]: from_url(url)))
            for round_ in range(args.rounds):
                print(f"round {round_ + 1} of {args.rounds}", file=sys.stderr)
                # The reference runs next to the file store in every round: the
                # disk's fsync time drifts with whatever else the machine does.
                reference = sqlite_reference(os.path.join(tmp, "reference.db"), args.duration)
                print(f"  sqlite3  {reference.writes:9.0f} writes/s", file=sys.stderr)
                rows.append(reference)
                for loop in args.loop.split(","):
                    for name, factory in backends:
                        rows.extend(anyio.run(measure, name, factory, loop, args, backend=loop))
    _report(rows, skipped)
    return 0


@contextmanager
def _started(
    servers: list[tuple[str, str | None, Callable[[str], Any]]], tmp: str
) -> Iterator[dict[str, str]]:
    """Each server's URL: the one given, or one started here (and stopped on exit)."""
    urls: dict[str, str] = {}
    with ExitStack() as stack:
        for name, given, start in servers:
            urls[name] = given or stack.enter_context(start(tmp))
        yield urls


def _report(rows: list[Row], skipped: list[str]) -> None:
    """Medians over the rounds, one row per system, loop and callers."""
    grouped: dict[tuple[str, str, int], list[Row]] = {}
    for row in rows:
        grouped.setdefault((row.system, row.loop, row.callers), []).append(row)
    rounds = max(len(g) for g in grouped.values())
    print(f"\nsmall records: 16-byte keys, {len(VALUE)}-byte values; medians of {rounds} rounds\n")
    print(f"| {'system':<8} | {'loop':<8} | {'callers':>7} | {'writes/s':>10} | {'reads/s':>10} |")
    print(f"|{'-' * 10}|{'-' * 10}|{'-' * 8}:|{'-' * 11}:|{'-' * 11}:|")
    medians: dict[tuple[str, str, int], tuple[float, float]] = {}
    for key, group in grouped.items():
        writes = statistics.median(r.writes or 0 for r in group)
        reads = statistics.median(r.reads or 0 for r in group)
        medians[key] = (writes, reads)
        system, loop, callers = key
        print(f"| {system:<8} | {loop:<8} | {callers:>7} | {writes:>10,.0f} | {reads:>10,.0f} |")
    reference = medians[("sqlite3", "-", 1)][0]
    print("\nfile store writes/s against plain sqlite3's durable writes (aim: at least 0.5x):")
    for (system, loop, callers), (writes, _) in medians.items():
        if system == "file":
            print(f"  {loop:<8} {callers:>3} callers: {writes / reference:5.2f}x")
    for reason in skipped:
        print(f"skipped {reason}")


if __name__ == "__main__":
    sys.exit(main())
