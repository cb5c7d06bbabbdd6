"""A real PostgreSQL for the test suite, on a free loopback port.

Run from the Debian package's binaries (``initdb`` and ``postgres`` under
/usr/lib/postgresql/<version>/bin, or on PATH) in a temp dir, without fsync.
PostgreSQL refuses to run as root, so when the suite runs as root the server
runs as ``nobody``, in a temp dir that user owns. Missing, it skips the tests
that need it (and fails them under ``MICRO_REQUIRE_BACKENDS=1``).
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import READY_TIMEOUT, STOP_TIMEOUT, ServerProcess, free_port

__all__ = ["postgres_server", "fresh_postgres_server", "start_postgres"]

#: the user the server runs as when the suite runs as root
UNPRIVILEGED = "nobody"


def _missing(reason: str) -> None:
    if os.environ.get("MICRO_REQUIRE_BACKENDS") == "1":
        pytest.fail(reason + "; MICRO_REQUIRE_BACKENDS=1 requires it")
    pytest.skip(reason)


def _binaries() -> tuple[str, str]:
    """(initdb, postgres) of the newest installed PostgreSQL."""
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) for x in Path(p).parent.name.split(".") if x.isdigit()],
    )
    for folder in reversed(versions):
        initdb, postgres = Path(folder, "initdb"), Path(folder, "postgres")
        if initdb.exists() and postgres.exists():
            return str(initdb), str(postgres)
    initdb_path, postgres_path = shutil.which("initdb"), shutil.which("postgres")
    if initdb_path and postgres_path:
        return initdb_path, postgres_path
    _missing("PostgreSQL's initdb and postgres not found (install the Debian package `postgresql`)")
    raise AssertionError("unreachable")


class PostgresProcess(ServerProcess):
    """A postgres server; run as ``nobody`` when we are root."""

    def __init__(
        self, argv: list[str], workdir: Path, ready: Callable[[], bool], url: str, uid: int | None
    ) -> None:
        super().__init__("postgres", argv, workdir, ready, url)
        self._uid = uid

    def start(self) -> None:
        user, group, extra_groups = _as_user(self._uid)
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                user=user,
                group=group,
                extra_groups=extra_groups,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                pytest.fail(f"postgres exited while starting:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"postgres not ready within {READY_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGINT, PostgreSQL's fast shutdown (SIGTERM waits for clients to leave), then SIGKILL."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _as_user(uid: int | None) -> tuple[int | None, int | None, list[int] | None]:
    """(user, group, extra_groups) for subprocess: ``uid``'s, or unchanged for None."""
    if uid is None:
        return None, None, None
    import pwd

    return uid, pwd.getpwuid(uid).pw_gid, []


def _ready(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        import psycopg

        try:
            with psycopg.connect(url, connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    return ready


def start_postgres(workdir: Path) -> PostgresProcess:
    """A PostgreSQL on 127.0.0.1, its data and socket in ``workdir``, as ``nobody`` if root.

    ``workdir`` must be one the server's user can reach (see :func:`_workdir`).
    """
    if importlib.util.find_spec("psycopg") is None:
        _missing("psycopg not installed (pip install 'micro-runtime[postgres]')")
    initdb, postgres = _binaries()
    uid = None
    if os.geteuid() == 0:
        import pwd

        uid = pwd.getpwnam(UNPRIVILEGED).pw_uid
    data = workdir / "data"
    if not data.exists():
        user, group, extra_groups = _as_user(uid)
        subprocess.run(
            [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-EUTF8", "--no-locale"],
            cwd=workdir,
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            user=user,
            group=group,
            extra_groups=extra_groups,
        )
    port = free_port()
    argv = [
        postgres,
        "-D", str(data),
        "-k", str(workdir),
        "-h", "127.0.0.1",
        "-p", str(port),
        "-c", "fsync=off",
        "-c", "full_page_writes=off",
        "-c", "synchronous_commit=off",
        "-c", "max_connections=50",
    ]  # fmt: skip
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    server = PostgresProcess(argv, workdir, _ready(url), url, uid)
    server.start()
    return server


def _workdir() -> Path:
    """A temp dir the server's user owns (pytest's own are root's, mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix="micro-pg-"))
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam(UNPRIVILEGED)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _running_postgres() -> Iterator[PostgresProcess]:
    """A PostgreSQL in a directory of its own, stopped and removed afterwards."""
    workdir = _workdir()
    try:
        server = start_postgres(workdir)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresProcess]:
    """One PostgreSQL for the session; tests use unique tables. ``.url`` is ``postgres://…``."""
    yield from _running_postgres()


@pytest.fixture
def fresh_postgres_server() -> Iterator[PostgresProcess]:
    """A PostgreSQL of the test's own, for tests that stop or restart it."""
    yield from _running_postgres()
