"""Calls per second through the HTTP API gateway (``micro gateway``).

    python benchmarks/gateway.py [--clients 16] [--duration 5] [--backend asyncio]

A JSON echo service (``Bench.Echo``) and ``micro gateway`` run in processes of
their own, found through mDNS kept on loopback; ``h2load --h1`` (nghttp2-client)
POSTs ``{"data": "x" * 80}`` to ``/bench/Bench.Echo`` from ``--clients``
HTTP/1.1 connections for ``--duration`` seconds. Every call crosses the
gateway's ASGI app and micro's client, then the service's HTTP/2 server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

import micro

os.environ.setdefault("MICRO_MDNS_INTERFACES", "127.0.0.1")
os.environ.setdefault("MICRO_STORE", "memory")

BODY = json.dumps({"data": "x" * 80}).encode()


class Bench:
    async def echo(self, req: dict[str, Any]) -> dict[str, Any]:
        return req


def serve(backend: str) -> None:
    service = micro.Service("bench", address="127.0.0.1:0", registry="mdns")
    service.handle(Bench())
    anyio.run(service.serve, backend=backend)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(cmd: list[str], core: int) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if shutil.which("taskset") else cmd


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.post(url, content=BODY, headers={"content-type": "application/json"})
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise SystemExit(f"the gateway did not answer in time: {last}")


def h2load(url: str, clients: int, duration: float, body: Path) -> float:
    cmd = ["h2load", "--h1", "-c", str(clients), "-t", "1", "-D", f"{duration:g}"]
    cmd += ["--warm-up-time", "1", "-d", str(body), "-H", "content-type: application/json", url]
    out = subprocess.run(pinned(cmd, 1), capture_output=True, text=True, check=True).stdout
    # h2load counts hypercorn's answers (``HTTP/1.1 200`` with no reason phrase) as
    # failed, so what is checked is that every request was answered, none errored or
    # timed out; wait_ready checked a whole answer beforehand.
    rate = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
    done = re.search(r"(\d+) started, (\d+) done, \d+ succeeded, \d+ failed, (\d+) errored", out)
    if rate is None or done is None or done.group(3) != "0" or done.group(2) == "0":
        raise SystemExit(f"h2load failed:\n{out[-2000:]}")
    return float(rate.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.backend)
        return 0
    if not shutil.which("h2load"):
        raise SystemExit("h2load (nghttp2-client) is needed")
    port = free_port()
    env = dict(os.environ)
    env["MICRO_REGISTRY"] = "mdns"
    service = subprocess.Popen(
        pinned([sys.executable, __file__, "--serve", "--backend", args.backend], 1), env=env
    )
    gateway_cmd = [sys.executable, "-m", "micro.cli", "--registry", "mdns"]
    if args.backend == "trio":
        gateway_cmd += ["--backend", "trio"]
    gateway_cmd += ["gateway", "--address", f"127.0.0.1:{port}"]
    gateway = subprocess.Popen(pinned(gateway_cmd, 0), env=env)
    url = f"http://127.0.0.1:{port}/bench/Bench.Echo"
    try:
        wait_ready(url)
        with tempfile.NamedTemporaryFile(suffix=".json") as body:
            body.write(BODY)
            body.flush()
            rates = sorted(
                h2load(url, args.clients, args.duration, Path(body.name))
                for _ in range(args.rounds)
            )
        median = rates[len(rates) // 2]
        print(
            f"gateway ({args.backend}), {args.clients} HTTP/1.1 clients: {median:,.0f} calls/s "
            f"(median of {args.rounds}: {', '.join(f'{r:,.0f}' for r in rates)})"
        )
    finally:
        for proc in (gateway, service):
            proc.terminate()
        for proc in (gateway, service):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
