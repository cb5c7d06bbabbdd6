"""A real redis-server for the test suite, on a free loopback port.

Started from the Debian package's binary (``redis-server``) in a temp dir,
without persistence; missing, it skips the tests that need it (and fails them
under ``MICRO_REQUIRE_BACKENDS=1``), as the fixtures in ``tests.servers`` do.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, free_port, require_binary

__all__ = ["redis_server", "fresh_redis_server", "start_redis"]


def _pong(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    return ready


def start_redis(workdir: Path, *, port: int | None = None) -> ServerProcess:
    """A redis-server on loopback, keeping nothing on disk."""
    binary = require_binary("redis-server", "redis-server")
    port = port or free_port()
    argv = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    server = ServerProcess("redis", argv, workdir, _pong(port), f"redis://127.0.0.1:{port}/0")
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One redis-server for the session; tests use unique keys. ``.url`` is ``redis://…/0``."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_redis_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A redis-server of the test's own, for tests that stop or restart it."""
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()
