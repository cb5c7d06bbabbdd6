"""Record the bytes real HTTP/2 peers exchange with a micro service.

``python record.py`` starts a micro echo service (on the h2-based connection,
the reference) behind a recording TCP proxy, runs grpcio, curl, h2load and
httpx against it, and writes what each side sent to ``<peer>.c2s`` (client to
server) and ``<peer>.s2c`` (server to client) beside this file.
``python record.py micro`` does the same with the service on micro's own
connection, into ``<peer>-micro.c2s`` and ``<peer>-micro.s2c``. The
differential tests replay them; run this again to refresh them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
HOST = "127.0.0.1"

SERVICE = """
import sys
from collections.abc import AsyncIterator
import anyio, micro

class Echo:
    async def call(self, req: bytes) -> bytes:
        return req

    async def stream(self, reqs: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for r in reqs:
            yield r

svc = micro.Service("rec", address="127.0.0.1:" + sys.argv[1], registry="memory")
svc.handle(Echo(), name="bench.Echo")
anyio.run(svc.serve)
"""

GRPCIO = """
import sys, grpc
with grpc.insecure_channel(sys.argv[1]) as ch:
    assert ch.unary_unary("/bench.Echo/Call")(b"hello", metadata=[("x-trace", "abc")]) == b"hello"
    assert ch.unary_unary("/bench.Echo/Call")(b"x" * 70000) == b"x" * 70000
    assert list(ch.stream_stream("/bench.Echo/Stream")(iter([b"a", b"bb", b"ccc"]))) == [
        b"a", b"bb", b"ccc"]
    try:
        ch.unary_unary("/bench.Echo/Missing")(b"?")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED
"""

HTTPX = """
import sys, httpx
with httpx.Client(http1=False, http2=True) as c:
    for body in (b"one", b"two" * 1000):
        r = c.post(f"http://{sys.argv[1]}/bench.Echo/Call", content=body,
                   headers={"content-type": "application/octet-stream", "cookie": "a=1"})
        assert r.content == body, r
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Recorder:
    def __init__(self, upstream: int, suffix: str) -> None:
        self.upstream = upstream
        self.suffix = suffix
        self.conns: list[tuple[bytearray, bytearray]] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream)
        c2s, s2c = bytearray(), bytearray()
        self.conns.append((c2s, s2c))

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, log: bytearray) -> None:
            try:
                while data := await r.read(65536):
                    log += data
                    w.write(data)
                    await w.drain()
            except OSError:
                pass
            finally:
                w.close()

        await asyncio.gather(pump(reader, up_writer, c2s), pump(up_reader, writer, s2c))

    def dump(self, name: str) -> None:
        name += self.suffix
        c2s = b"".join(bytes(c) for c, _ in self.conns)
        s2c = b"".join(bytes(s) for _, s in self.conns)
        if len(self.conns) != 1:
            raise SystemExit(f"{name}: expected one connection, got {len(self.conns)}")
        (HERE / f"{name}.c2s").write_bytes(c2s)
        (HERE / f"{name}.s2c").write_bytes(s2c)
        print(name, len(c2s), len(s2c))
        self.conns = []


async def run(cmd: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.DEVNULL)
    if await proc.wait():
        raise SystemExit(f"{cmd[0]} failed")


def start_service(port: int, implementation: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MICRO_HTTP2=implementation)
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(port)], env=env)
    for _ in range(100):
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return service


async def main(service: subprocess.Popen[bytes], upstream: int, suffix: str) -> None:
    rec = Recorder(upstream, suffix)
    try:
        server = await asyncio.start_server(rec.handle, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        addr = f"{HOST}:{port}"
        await run([sys.executable, "-c", GRPCIO, addr])
        await asyncio.sleep(0.2)
        rec.dump("grpcio")
        url = f"http://{addr}/bench.Echo/Call"
        await run(
            [
                "curl",
                "-sS",
                "--http2-prior-knowledge",
                "-H",
                "content-type: application/octet-stream",
                "--data-binary",
                "hello",
                url,
            ]
        )
        await asyncio.sleep(0.2)
        rec.dump("curl")
        with tempfile.NamedTemporaryFile(suffix=".bin") as body:
            body.write(b"\x00\x00\x00\x00\x05hello")
            body.flush()
            await run(
                [
                    "h2load",
                    "-n",
                    "40",
                    "-c",
                    "1",
                    "-m",
                    "8",
                    "-H",
                    "content-type: application/grpc",
                    "-H",
                    "te: trailers",
                    "-d",
                    body.name,
                    url,
                ]
            )
        await asyncio.sleep(0.2)
        rec.dump("h2load")
        await run([sys.executable, "-c", HTTPX, addr])
        await asyncio.sleep(0.2)
        rec.dump("httpx")
        server.close()
    finally:
        service.terminate()
        service.wait()


if __name__ == "__main__":
    implementation = sys.argv[1] if len(sys.argv) > 1 else "h2"
    port = free_port()
    suffix = "" if implementation == "h2" else f"-{implementation}"
    asyncio.run(main(start_service(port, implementation), port, suffix))
