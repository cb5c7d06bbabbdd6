"""Store figures: reads/s and writes/s of small records, per backend, in one run.

    python benchmarks/store.py [--duration 1] [--rounds 3] [--concurrency 64] [--loop asyncio,trio]
                               [--etcd http://127.0.0.1:2379] [--redis redis://127.0.0.1:6379/0]

Each backend (memory, file, etcd, redis) is measured with one caller doing
one operation after another, and with ``--concurrency`` callers at once:
writes of new 16-byte keys with 100-byte values, then exact reads of keys
written before. The reference for the file store is plain ``sqlite3`` doing
the same durable writes in this process, with no event loop and no threads:
one connection, WAL, ``synchronous=FULL``, one commit per write (and point
reads on that connection), in every round next to the rest. The file store
aims at no less than half of its writes/s; it gets far past that by committing
concurrent writes together.

etcd and Redis are started on free loopback ports from their Debian packages
(``etcd-server``, ``redis-server``) unless URLs are given; a backend whose
server is neither given nor installed is skipped with the reason.
"""

from __future__ import annotations

import argparse
import os
import shutil
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

from micro.store import EtcdStore, FileStore, MemoryStore, Record, RedisStore, Store  # noqa: E402
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
    parser.add_argument("--only", help="backends to run, e.g. memory,file")
    args = parser.parse_args()
    only = set((args.only or "memory,file,etcd,redis").split(","))

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
        for name, given, binary, start in (
            ("etcd", args.etcd, "etcd", _etcd),
            ("redis", args.redis, "redis-server", _redis),
        ):
            if name not in only:
                continue
            if given is None and shutil.which(binary) is None:
                skipped.append(f"{name}: `{binary}` is not installed and no URL was given")
                continue
            servers.append((name, given, start))
        with _started(servers, tmp) as urls:
            if "etcd" in urls:
                backends.append(("etcd", lambda: EtcdStore(urls["etcd"])))
            if "redis" in urls:
                backends.append(("redis", lambda: RedisStore(urls["redis"])))
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
