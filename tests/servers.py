"""Real backend servers (etcd, ...) started by the test suite on free loopback ports.

Each server runs from its Debian package's binary, in a temp dir, on ports
picked by binding port 0, and is stopped by its PID. A missing binary skips
the tests that need it, with the reason; with ``MICRO_REQUIRE_BACKENDS=1``
(as in CI) it fails them instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

__all__ = ["ServerProcess", "etcd_server", "fresh_etcd_server", "start_etcd"]

#: seconds a server may take to become ready (etcd needs ~0.1 s, a busy CI box more)
READY_TIMEOUT = 20.0
#: seconds a server may take to stop after SIGTERM before it gets SIGKILL
STOP_TIMEOUT = 10.0


class ServerProcess:
    """A server process started from ``argv``; ``restart()`` keeps its ports and data dir."""

    def __init__(
        self, name: str, argv: list[str], workdir: Path, ready: Callable[[], bool], url: str
    ) -> None:
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.url = url
        self._ready = ready
        self._log = workdir / f"{name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                pytest.fail(f"{self.name} exited while starting:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"{self.name} not ready within {READY_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to our PID, then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Stop and start again on the same ports and data dir (for reconnect tests)."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, package: str) -> str:
    """The binary's path; skips (or fails under MICRO_REQUIRE_BACKENDS=1) when missing."""
    path = shutil.which(name)
    if path is None:
        reason = f"`{name}` not on PATH (install the Debian package `{package}`)"
        if os.environ.get("MICRO_REQUIRE_BACKENDS") == "1":
            pytest.fail(reason + "; MICRO_REQUIRE_BACKENDS=1 requires it")
        pytest.skip(reason)
    return path


def _http_ok(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return httpx.get(url, timeout=1.0, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    return ready


def start_etcd(workdir: Path) -> ServerProcess:
    """A one-member etcd on loopback, with fast elections so leases and restarts are quick."""
    binary = require_binary("etcd", "etcd-server")
    port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
    argv = [
        binary,
        "--name=t",
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=t={peer_url}",
        "--initial-cluster-state=new",
        "--heartbeat-interval=10",
        "--election-timeout=100",
    ]
    server = ServerProcess("etcd", argv, workdir, _http_ok(client_url + "/health"), client_url)
    server.start()
    return server


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One etcd for the session; tests use unique keys. ``.url`` is its client URL."""
    server = start_etcd(tmp_path_factory.mktemp("etcd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_etcd_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """An etcd of the test's own, for tests that stop or restart it."""
    server = start_etcd(tmp_path)
    try:
        yield server
    finally:
        server.stop()
