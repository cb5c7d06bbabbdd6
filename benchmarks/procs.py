"""Start, pin, read and stop the benchmark's child processes."""

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from systems import environment, python_path

HERE = Path(__file__).resolve().parent
SERVER_CORE = 0
CLIENT_CORE = 1


class BenchError(RuntimeError):
    """A child process failed; the message carries its output."""


def pinning_available() -> bool:
    """True if ``taskset`` exists and both cores are usable by this process."""
    if shutil.which("taskset") is None:
        return False
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        return False
    return {SERVER_CORE, CLIENT_CORE} <= cpus


def pinned(cmd: list[str], core: int | None) -> list[str]:
    """Prefix ``cmd`` with ``taskset -c core`` (``None``: no pinning)."""
    return cmd if core is None else ["taskset", "-c", str(core), *cmd]


def child_env(gen_dir: Path) -> dict[str, str]:
    """Environment for Python children: generated code and the repo root importable."""
    env = dict(os.environ)
    paths = [str(gen_dir), str(HERE.parent), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def system_env(env: dict[str, str], system: str) -> dict[str, str]:
    """``env`` with a system's own variables, and its own directories first on PYTHONPATH."""
    merged = env | environment(system)
    paths = [*python_path(system), merged.get("PYTHONPATH", "")]
    merged["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return merged


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            value: dict[str, Any] = json.loads(line)
            return value
    raise ValueError("no JSON line in output")


class Server:
    """One server process; ``start`` waits for its JSON ready line."""

    def __init__(
        self, system: str, gen_dir: Path, core: int | None, options: tuple[str, ...] = ()
    ) -> None:
        self.system = system
        self.port = free_port()
        cmd = [sys.executable, str(HERE / "server.py"), system, str(self.port), *options]
        self._cmd = pinned(cmd, core)
        self._env = system_env(child_env(gen_dir), system)
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self._proc = subprocess.Popen(
            self._cmd, stdout=subprocess.PIPE, stderr=self._stderr, env=self._env
        )
        assert self._proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if sel.select(timeout=0.1):
                    line = self._proc.stdout.readline()
                    if line.startswith(b"{") and json.loads(line).get("ready"):
                        return
                    if not line:
                        break  # stdout closed: the process died
        self.stop()
        raise BenchError(f"{self.system} server did not start:\n{self.stderr_tail()}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far (Linux)."""
        assert self._proc is not None
        fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rpartition(")")[2].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; only our own child."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                sys.stderr.write(f"  {self.system} server ignored SIGTERM; killing it\n")
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def stderr_tail(self, limit: int = 4000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def close(self) -> None:
        self.stop()
        self._stderr.close()

    def __enter__(self) -> "Server":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_child(cmd: list[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a child to completion and return its stdout; raise with its output on failure."""
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{cmd[-1]!r}... timed out after {timeout:.0f} s") from exc
    out = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace")[-4000:]
        raise BenchError(f"exit {done.returncode}: {' '.join(cmd)}\n{out[-2000:]}{err}")
    return out
