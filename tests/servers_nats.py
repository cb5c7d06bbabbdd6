"""Real nats-server for the test suite, on free loopback ports.

``nats_server`` is one server for the whole session (tests use unique
subjects); ``fresh_nats_server`` is a test's own, for tests that stop, pause or
restart it. Both are :class:`~tests.servers.ServerProcess` objects whose
``url`` is ``nats://127.0.0.1:<port>`` and whose ``monitor`` attribute is the
HTTP monitoring URL (``/connz``, ``/subsz``, ``/healthz``). JetStream is on,
storing in the server's temp dir.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.servers import ServerProcess, _http_ok, free_port, require_binary

__all__ = ["fresh_nats_server", "nats_server", "start_nats"]


def start_nats(
    workdir: Path, *, config: str = "", args: Sequence[str] = (), jetstream: bool = True
) -> ServerProcess:
    """A nats-server on loopback with its monitoring port, ready when /healthz answers.

    ``config`` is nats-server configuration text (for what has no flag, such
    as ``ping_interval``); ``args`` are more command-line flags; ``jetstream``
    turns JetStream on, storing in ``workdir``.
    """
    binary = require_binary("nats-server", "nats-server")
    port, monitor_port = free_port(), free_port()
    monitor = f"http://127.0.0.1:{monitor_port}"
    argv = [binary, "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor_port)]
    if jetstream:  # its data in the server's own dir, kept across restart()
        argv += ["-js", "-sd", str(workdir / "jetstream")]
    argv += args
    if config:
        path = workdir / "nats.conf"
        path.write_text(config)
        argv += ["-c", str(path)]
    server = ServerProcess(
        "nats", argv, workdir, _http_ok(monitor + "/healthz"), f"nats://127.0.0.1:{port}"
    )
    server.monitor = monitor  # type: ignore[attr-defined]
    server.start()
    return server


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One nats-server for the session; tests use unique subjects."""
    server = start_nats(tmp_path_factory.mktemp("nats"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_nats_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A nats-server of the test's own, for tests that stop or restart it."""
    server = start_nats(tmp_path)
    try:
        yield server
    finally:
        server.stop()
