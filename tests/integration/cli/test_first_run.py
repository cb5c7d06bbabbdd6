"""What a new user meets first: a fresh gateway and its dashboard, start-up errors,
``micro run`` under an ignored SIGINT, and the examples with ``--micro-*`` flags.

Programs run as subprocesses, as a user runs them, each on its own free
loopback port; mDNS stays on 127.0.0.1 (``MICRO_MDNS_INTERFACES``, set by
tests/conftest.py and inherited by every subprocess).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import anyio
import anyio.abc
import httpx
import pytest

import micro
from micro.gateway import Gateway, bind, open_gateway, serve_asgi
from micro.gateway.server import bound_address

from ...servers import ServerProcess, free_port
from ..conftest import Greeter
from ..gateway.test_dashboard import STEP_TIMEOUT, _artifact_dir, _chromium
from .test_cli_local import _children

ROOT = Path(__file__).resolve().parents[3]
MICRO = [sys.executable, "-m", "micro.cli"]
HELLOWORLD = str(ROOT / "examples" / "helloworld" / "main.py")

#: seconds one program may take to start, answer or stop on a busy machine
TIMEOUT = 60


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MICRO_DEBUG"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _run(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=_env(**env), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """stderr's lines; the first must be the one ``error:`` line, with no traceback."""
    lines = result.stderr.splitlines()
    assert lines, (result.returncode, result.stdout)
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "deregister" not in result.stderr, result.stderr
    return lines


def _answer(url: str, process: subprocess.Popen[str] | None = None, **call: object) -> object:
    """POST a JSON call until the program answers it (it is starting)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            response = httpx.post(url, timeout=5, trust_env=False, **call)  # type: ignore[arg-type]
            return response.json()
        except httpx.TransportError:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"exited with {process.returncode} before answering") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _first_line(process: subprocess.Popen[str], stream: IO[str]) -> str:
    """The first line the process writes to ``stream``; it is killed if none comes in time."""
    killer = threading.Timer(TIMEOUT, process.kill)  # bounds the wait
    killer.start()
    try:
        return stream.readline().rstrip("\n")
    finally:
        killer.cancel()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


HELLO = {"json": {"name": "alice"}, "headers": {"Micro-Endpoint": "Helloworld.Greeting"}}


# -- a fresh gateway ------------------------------------------------------------


async def _line(stream: anyio.abc.ByteReceiveStream) -> str:
    buffer = bytearray()
    while b"\n" not in buffer:
        buffer.extend(await stream.receive())
    return bytes(buffer).partition(b"\n")[0].decode()


@pytest.mark.anyio
@pytest.mark.parametrize("registry", ["mdns", "etcd"])
async def test_a_fresh_gateway_answers_its_first_request(
    registry: str, anyio_backend: str, request: pytest.FixtureRequest
) -> None:
    if registry == "etcd":
        etcd: ServerProcess = request.getfixturevalue("etcd_server")
        registry = "etcd://" + etcd.url.removeprefix("http://")
    port = free_port()
    argv = [*MICRO, "--backend", anyio_backend, "gateway", "--address", f"127.0.0.1:{port}"]
    process = await anyio.open_process(argv, env=_env(MICRO_REGISTRY=registry))
    try:
        assert process.stderr is not None
        with anyio.fail_after(TIMEOUT):
            assert await _line(process.stderr) == f"gateway serving on http://127.0.0.1:{port}"
        async with httpx.AsyncClient(trust_env=False) as http:
            first = await http.get(f"http://127.0.0.1:{port}/api/services")
        assert first.status_code == 200, first.text
        assert isinstance(first.json(), list)
        assert first.text.endswith("\n")
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(TIMEOUT):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


@pytest.mark.anyio
@pytest.mark.parametrize("registry", ["mdns", "etcd"])
async def test_the_gateway_app_opens_its_registry_in_the_servers_lifespan(
    registry: str, request: pytest.FixtureRequest
) -> None:
    """Gateway(client) served by an ASGI server: the first request finds the registry open."""
    if registry == "etcd":
        etcd: ServerProcess = request.getfixturevalue("etcd_server")
        registry = "etcd://" + etcd.url.removeprefix("http://")
    sock = bind("127.0.0.1:0")
    async with micro.Client(registry=registry) as client, anyio.create_task_group() as tg:
        tg.start_soon(serve_asgi, Gateway(client), sock)
        async with httpx.AsyncClient(trust_env=False) as http:
            with anyio.fail_after(TIMEOUT):
                while True:
                    try:
                        first = await http.get(f"http://{bound_address(sock)}/api/services")
                        break
                    except httpx.TransportError:
                        await anyio.sleep(0.05)  # hypercorn is starting
        tg.cancel_scope.cancel()
    sock.close()
    assert first.status_code == 200, first.text
    assert isinstance(first.json(), list)


def _services_shown(chromium: str, url: str, screenshot: Path) -> dict[str, str]:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 600})
            page.set_default_timeout(STEP_TIMEOUT)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            services = page.locator("#services")
            expect(services).not_to_contain_text("loading")
            page.screenshot(path=str(screenshot), full_page=True)
            return {
                "services": services.inner_text(),
                "errors": str(page.locator("#services .error").count()),
                "page_errors": "\n".join(errors),
            }
        finally:
            browser.close()


@pytest.mark.anyio
async def test_the_dashboard_of_a_fresh_gateway_shows_no_error(
    tmp_path: Path, anyio_backend: str
) -> None:
    chromium = _chromium()
    screenshot = _artifact_dir(tmp_path) / f"dashboard-fresh-{anyio_backend}.png"
    async with open_gateway("127.0.0.1:0", registry="mdns") as address:
        shown = await anyio.to_thread.run_sync(
            _services_shown, chromium, f"http://{address}/", screenshot
        )
    assert shown["errors"] == "0", shown["services"]
    assert "not open" not in shown["services"]
    assert shown["page_errors"] == ""
    assert screenshot.stat().st_size > 0


# -- start-up errors ------------------------------------------------------------


@pytest.fixture
def helloworld() -> Iterator[int]:
    """The hello world example serving on a free port (no registry); yields the port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, HELLOWORLD, f"--micro-address=127.0.0.1:{port}"],
        env=_env(MICRO_REGISTER="false"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert _answer(f"http://127.0.0.1:{port}", process, **HELLO) == {"message": "Hello alice"}
        yield port
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(TIMEOUT)
        finally:
            _stop(process)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_second_service_on_the_same_port_says_so_in_one_line(
    helloworld: int, backend: str
) -> None:
    second = _run(
        [sys.executable, HELLOWORLD, "--backend", backend, "--address", f"127.0.0.1:{helloworld}"],
        MICRO_REGISTER="false",
    )
    assert second.returncode == 1, second.stderr
    lines = _error_lines(second)
    assert lines[0] == (
        f"error: helloworld: cannot listen on 127.0.0.1:{helloworld}: address already in use"
    )
    assert len(lines) <= 5, second.stderr
    # MICRO_DEBUG=1 shows where it failed.
    debug = _run(
        [sys.executable, HELLOWORLD, "--backend", backend, "--address", f"127.0.0.1:{helloworld}"],
        MICRO_REGISTER="false",
        MICRO_DEBUG="1",
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert f"cannot listen on 127.0.0.1:{helloworld}: address already in use" in debug.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_service_served_in_a_task_group_of_its_own_fails_in_one_line(
    helloworld: int, backend: str
) -> None:
    """The config example runs serve() beside a watcher task: no traceback of that group."""
    example = str(ROOT / "examples" / "config" / "main.py")
    address = f"127.0.0.1:{helloworld}"
    busy = _run([sys.executable, example, "--backend", backend, f"--micro-address={address}"])
    assert busy.returncode == 1, busy.stderr
    lines = busy.stderr.splitlines()
    assert lines[-1] == f"error: greeter: cannot listen on {address}: address already in use"
    assert len(lines) <= 5 and "Traceback" not in busy.stderr, busy.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_an_unreachable_etcd_is_one_line_and_nothing_is_deregistered(backend: str) -> None:
    etcd = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = _run(
        [
            sys.executable,
            HELLOWORLD,
            "--backend",
            backend,
            f"--micro-address=127.0.0.1:{free_port()}",
            f"--micro-registry=etcd://{etcd}",
        ]
    )
    assert result.returncode == 1, result.stderr
    (line,) = _error_lines(result)
    # The reason's words are the event loop's (asyncio's and Trio's differ).
    assert line.startswith(f"error: helloworld: etcd at http://{etcd} is unreachable ("), line


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_bad_option_is_one_line_and_exit_status_2(backend: str) -> None:
    typo = _run([sys.executable, HELLOWORLD, "--backend", backend, "--micro-registy=memory"])
    assert typo.returncode == 2, typo.stderr
    (line,) = _error_lines(typo)
    assert line.startswith("error: unknown flag --micro-registy; the service's flags: ")
    port = _run([sys.executable, HELLOWORLD, "--backend", backend], MICRO_ADDRESS="localhost:99999")
    assert port.returncode == 2, port.stderr
    assert _error_lines(port) == [
        "error: --micro-address/MICRO_ADDRESS: port 99999 of address 'localhost:99999' "
        "is not in 0-65535"
    ]
    registry = _run([sys.executable, HELLOWORLD, "--backend", backend, "--micro-registry=zk://x"])
    assert registry.returncode == 2, registry.stderr
    (line,) = _error_lines(registry)
    assert line.startswith("error: --micro-registry/MICRO_REGISTRY: unknown registry 'zk://x'")


def test_the_micro_command_fails_to_start_in_one_line(helloworld: int) -> None:
    busy = _run([*MICRO, "--registry", "memory", "gateway", "--address", f"127.0.0.1:{helloworld}"])
    assert busy.returncode == 1, busy.stderr
    assert _error_lines(busy) == [
        f"error: cannot listen on 127.0.0.1:{helloworld}: address already in use"
    ]
    etcd = f"127.0.0.1:{free_port()}"
    unreachable = _run([*MICRO, "--registry", f"etcd://{etcd}", "gateway", "--address", ":0"])
    assert unreachable.returncode == 1, unreachable.stderr
    (line,) = _error_lines(unreachable)
    assert f"etcd at http://{etcd} is unreachable" in line
    typo = _run([*MICRO, "--micro-registy=memory", "services"])
    assert typo.returncode == 2
    (line,) = _error_lines(typo)
    assert line.startswith("error: No such option: --micro-registy")
    # --debug (or MICRO_DEBUG=1) prints the traceback as well.
    debug = _run([*MICRO, "--debug", "--registry", f"etcd://{etcd}", "services"])
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and f"etcd at http://{etcd} is unreachable" in debug.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_micro_command_runs_on_trio_and_asyncio(backend: str) -> None:
    listed = _run([*MICRO, "--backend", backend, "--registry", "memory", "services"])
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["SERVICE", "VERSIONS", "NODES"]


# -- micro run under an ignored SIGINT --------------------------------------------

SERVICE = """\
import os

import anyio

import micro


class Probe:
    async def pid(self, req: dict) -> dict:
        return {"pid": os.getpid()}


service = micro.Service("first-run", register=False)
service.handle(Probe())
anyio.run(service.serve)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_micro_run_stops_on_sigint_when_its_parent_ignored_it(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(SERVICE)
    port = free_port()
    runner = subprocess.Popen(
        [*MICRO, "run", str(tmp_path)],
        env=_env(MICRO_ADDRESS=f"127.0.0.1:{port}"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_ignore_sigint,
    )
    service_pid = 0
    try:
        answer = _answer(f"http://127.0.0.1:{port}/Probe/Pid", json={})
        assert isinstance(answer, dict)
        service_pid = answer["pid"]
        assert service_pid != runner.pid
        runner.send_signal(signal.SIGINT)
        assert runner.wait(TIMEOUT) == 0
    finally:
        if runner.poll() is None:
            for child in _children(runner.pid):  # the service has its own process group
                os.kill(child, signal.SIGKILL)
        _stop(runner)  # type: ignore[arg-type]
    deadline = time.monotonic() + TIMEOUT
    while _alive(service_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(service_pid), "the service outlived micro run"
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_a_command_stops_on_sigint_when_its_parent_ignored_it() -> None:
    subscriber = subprocess.Popen(
        [*MICRO, "--registry", "memory", "subscribe", "first.run"],
        env=_env(MICRO_ADDRESS="127.0.0.1:0"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    try:
        assert subscriber.stderr is not None
        assert _first_line(subscriber, subscriber.stderr) == "subscribed to first.run"
        subscriber.send_signal(signal.SIGINT)
        assert subscriber.wait(TIMEOUT) == 0
    finally:
        _stop(subscriber)


# -- the examples take --micro-* flags ------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("example", "args", "call"),
    [
        ("helloworld", [], HELLO),
        ("streaming", ["serve"], {"json": {"value": 1}, "url": "/Numbers/Count"}),
        ("config", [], {"json": {"name": "alice"}, "headers": {"Micro-Endpoint": "Greeter.Hello"}}),
    ],
    ids=["helloworld", "streaming", "config"],
)
def test_examples_take_micro_flags(
    example: str, args: list[str], call: dict[str, object], backend: str
) -> None:
    port = free_port()
    argv = [
        sys.executable,
        str(ROOT / "examples" / example / "main.py"),
        *args,
        "--backend",
        backend,
        "--micro-registry=memory",
        f"--micro-address=127.0.0.1:{port}",
        "--micro-request-log=info",
    ]
    process = subprocess.Popen(
        argv,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        call = dict(call)
        url = f"http://127.0.0.1:{port}{call.pop('url', '')}"
        answer = _answer(url, process, **call)
        assert answer, answer
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, out
        assert f"serving on 127.0.0.1:{port}" in out
    finally:
        _stop(process)
    if example == "config":
        return  # its other flags are config values (--greeting.template=...)
    # Any other unknown flag is still refused.
    refused = _run([*argv, "--nope"])
    assert refused.returncode == 2
    assert "unrecognized arguments: --nope" in refused.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_auth_example_takes_micro_flags(backend: str) -> None:
    example = str(ROOT / "examples" / "auth" / "main.py")
    ran = _run([sys.executable, example, "--backend", backend, "--micro-metrics=false"])
    assert ran.returncode == 0, ran.stderr
    assert "Hello alice" in ran.stdout


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_grpc_interop_server_takes_micro_flags(backend: str, tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools generates the example's code")
    example = str(ROOT / "examples" / "grpc_interop" / "server.py")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            example,
            "--backend",
            backend,
            "--micro-registry=memory",
            f"--micro-address=127.0.0.1:{port}",
        ],
        env=_env(ROUTEGUIDE_GENERATED=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert _first_line(server, server.stdout) == f"routeguide listening on 127.0.0.1:{port}"
        server.send_signal(signal.SIGINT)
        assert server.wait(TIMEOUT) == 0
    finally:
        _stop(server)


# -- JSON answers end their line ---------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("http2", [False, True], ids=["HTTP/1.1", "HTTP/2"])
async def test_json_answers_to_plain_calls_end_with_a_newline(http2: bool) -> None:
    service = micro.Service("lines", address="127.0.0.1:0", registry="memory")
    service.handle(Greeter())
    async with (
        service.running(),
        httpx.AsyncClient(http1=not http2, http2=http2, trust_env=False) as http,
    ):
        base = f"http://{service.address}"
        answers = [
            await http.post(f"{base}/Greeter/Hello", json={"name": "nl"}),
            await http.post(f"{base}/Greeter/Nope", json={}),  # an error, as JSON
            await http.get(f"{base}/health"),
            await http.get(f"{base}/health/ready"),
        ]
    assert [a.status_code for a in answers] == [200, 404, 200, 200]
    for answer in answers:
        assert answer.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert answer.text.endswith("}\n") and answer.text.count("\n") == 1, answer.text
    assert answers[0].json() == {"message": "Hello nl"}
