"""The micro command's local work, as a subprocess: the store, config, and
``micro new`` / ``micro run`` (a scaffolded service passes its own tests, runs,
and restarts on a code change)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ...servers import free_port

MICRO = [sys.executable, "-m", "micro.cli"]

#: seconds one command, or one restart of a service, may take on a busy machine
TIMEOUT = 60


def micro_cmd(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MICRO, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_store_commands(tmp_path: Path) -> None:
    store = ["--store", f"file://{tmp_path / 'cli.db'}"]
    assert micro_cmd(*store, "store", "put", "user/1", "alice").returncode == 0
    assert micro_cmd(*store, "store", "put", "user/2", "bob", "--table", "t").returncode == 0
    got = micro_cmd(*store, "store", "get", "user/1")
    assert (got.returncode, got.stdout) == (0, "alice\n")
    # The store URL comes from MICRO_STORE as well.
    listed = micro_cmd(
        "store",
        "list",
        "--prefix",
        "user/",
        "--table",
        "t",
        env={"MICRO_STORE": f"file://{tmp_path / 'cli.db'}"},
    )
    assert listed.stdout.splitlines() == ["user/2"]
    assert micro_cmd(*store, "store", "delete", "user/1").returncode == 0
    missing = micro_cmd(*store, "store", "get", "user/1")
    assert missing.returncode == 1
    assert "404 Not Found" in one_line_error(missing)


def test_config_get(tmp_path: Path) -> None:
    config = tmp_path / "app.yaml"
    config.write_text("database:\n  host: db1\n  port: 5432\n")
    got = micro_cmd(
        "config",
        "get",
        "database",
        "--file",
        str(config),
        "--env",
        "CLITEST_",
        env={"CLITEST_DATABASE__HOST": "db2"},
    )
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {"host": "db2", "port": 5432}
    missing = micro_cmd("config", "get", "database.user", "--file", str(config))
    assert missing.returncode == 1
    assert "no config value at database.user" in one_line_error(missing)


def _call(url: str, want: str) -> None:
    """Call until the service answers ``want`` (it is starting or restarting)."""
    deadline = time.monotonic() + TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        try:
            resp = httpx.post(url, json={"name": "x"}, timeout=5, trust_env=False)
            last = resp.text
            if resp.status_code == 200 and resp.json()["message"] == want:
                return
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(f"no {want!r} from {url} within {TIMEOUT} s; last: {last}")


def _children(pid: int) -> list[int]:
    """The PIDs of ``pid``'s children (Linux's /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(c) for c in task.read_text().split()]
        except OSError:
            pass  # the task ended meanwhile
    return children


def test_new_service_passes_its_tests_runs_and_restarts(tmp_path: Path) -> None:
    target = tmp_path / "hello-world"
    created = micro_cmd("new", "hello-world", "--dir", str(target))
    assert created.returncode == 0, created.stderr
    assert {p.name for p in target.iterdir()} >= {
        "main.py",
        "handler.py",
        "messages.py",
        "README.md",
        "pyproject.toml",
        "tests",
    }
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "6 passed" in tests.stdout  # three tests, asyncio and Trio

    port = free_port()
    env = {**os.environ, "MICRO_ADDRESS": f"127.0.0.1:{port}", "MICRO_REGISTER": "false"}
    runner = subprocess.Popen(
        [*MICRO, "run", str(target)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        url = f"http://127.0.0.1:{port}/HelloWorld/Call"
        _call(url, "Hello x")
        handler = target / "handler.py"
        handler.write_text(handler.read_text().replace('f"Hello {', 'f"Howdy {'))
        _call(url, "Howdy x")
        runner.send_signal(signal.SIGINT)
        assert runner.wait(TIMEOUT) == 0
    finally:
        if runner.poll() is None:
            # The service has a process group of its own: a killed micro run would
            # leave it running.
            for child in _children(runner.pid):
                os.kill(child, signal.SIGKILL)
            runner.kill()
            runner.wait()
    assert runner.stderr is not None
    assert "handler.py changed, restarting" in runner.stderr.read()

    again = micro_cmd("new", "hello-world", "--dir", str(target))
    assert again.returncode == 2
    assert "exists and is not empty" in one_line_error(again)
    bad = micro_cmd("new", "9 lives", "--dir", str(tmp_path / "x"))
    assert bad.returncode == 2
    assert "'9 lives' is not a service name" in one_line_error(bad)
