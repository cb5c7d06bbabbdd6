"""Echo server process: ``python server.py SYSTEM PORT``.

Prints one JSON line once the port accepts connections, then serves until SIGTERM.
Needs the generated ``echo_pb2`` modules (and ``micro`` for micro systems) on PYTHONPATH.
"""

import argparse
import asyncio
import signal
import socket
import time
from collections.abc import AsyncIterator

import anyio
from echo_pb2 import EchoMessage
from loadgen import emit
from systems import GRPCIO, SYSTEMS, backend, backend_options, is_grpcio, is_grpclib

HOST = "127.0.0.1"


def announce(system: str, port: int) -> None:
    import json
    import os

    emit(json.dumps({"ready": True, "system": system, "port": port, "pid": os.getpid()}))


async def serve_grpcio(port: int, system: str = GRPCIO) -> None:
    """grpcio's ``grpc.aio`` server (C core) with a generated servicer."""
    import echo_pb2_grpc
    import grpc

    class Servicer(echo_pb2_grpc.EchoServicer):
        async def Echo(self, request: EchoMessage, context: object) -> EchoMessage:
            return request

        async def Stream(
            self, request_iterator: AsyncIterator[EchoMessage], context: object
        ) -> AsyncIterator[EchoMessage]:
            async for message in request_iterator:
                yield message

    server = grpc.aio.server()
    echo_pb2_grpc.add_EchoServicer_to_server(Servicer(), server)
    bound = server.add_insecure_port(f"{HOST}:{port}")
    if bound != port:
        raise SystemExit(f"grpcio could not bind {HOST}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    announce(system, port)
    await stop.wait()
    await server.stop(0)


async def serve_grpclib(port: int, system: str) -> None:
    """grpclib's server, with the handler mapping its generated code would write."""
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server, Stream

    class Servicer:
        async def echo(self, stream: Stream[EchoMessage, EchoMessage]) -> None:
            request = await stream.recv_message()
            assert request is not None
            await stream.send_message(request)

        async def stream(self, stream: Stream[EchoMessage, EchoMessage]) -> None:
            async for message in stream:
                await stream.send_message(message)

        def __mapping__(self) -> dict[str, Handler]:
            return {
                "/Echo/Echo": Handler(self.echo, Cardinality.UNARY_UNARY, EchoMessage, EchoMessage),
                "/Echo/Stream": Handler(
                    self.stream, Cardinality.STREAM_STREAM, EchoMessage, EchoMessage
                ),
            }

    server = Server([Servicer()])
    await server.start(HOST, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    announce(system, port)
    await stop.wait()
    server.close()
    await server.wait_closed()


class BytesEcho:
    """micro handler of raw payloads, served as ``bench.Echo`` (``/bench.Echo/Echo``)."""

    async def echo(self, req: bytes) -> bytes:
        return req

    async def stream(self, reqs: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for req in reqs:
            yield req


class Echo:
    """micro handler: endpoints ``Echo.Echo`` and ``Echo.Stream``.

    Served at ``/Echo/Echo`` and ``/Echo/Stream``, the paths of ``service Echo``.
    """

    async def echo(self, req: EchoMessage) -> EchoMessage:
        return req

    async def stream(self, reqs: AsyncIterator[EchoMessage]) -> AsyncIterator[EchoMessage]:
        async for req in reqs:
            yield req


def wait_port(port: int, timeout: float = 20.0) -> None:
    """Block until ``HOST:port`` accepts a TCP connection."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def telemetry_options(level: str) -> dict[str, object]:
    """Service options for ``--telemetry``.

    - ``bare``: metrics, tracing and the request log off;
    - ``default``: no options (metrics on, no tracer provider, request log at DEBUG);
    - ``logged``: metrics and a JSON access-log line per call (to /dev/null);
    - ``traced``: metrics and an OpenTelemetry SDK tracer provider with a batch span
      processor, every call sampled (its exporter drops the spans, so the figure is
      micro's and the SDK's cost, not a collector's);
    - ``full``: metrics, spans and the access log.
    """
    if level == "bare":
        return {"metrics": False, "tracing": False, "request_log": "off"}
    options: dict[str, object] = {}
    if level in ("logged", "full"):
        import logging
        import os

        from micro.observability import ContextFilter, JsonFormatter

        handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
        handler.addFilter(ContextFilter())
        handler.setFormatter(JsonFormatter())
        access = logging.getLogger("micro.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        options["request_log"] = "info"
    if level in ("traced", "full"):
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Discard(SpanExporter):
            def export(self, spans: object) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        options["tracing"] = provider
    return options


async def serve_micro(system: str, port: int, telemetry: str = "default") -> None:
    """micro's server; ``serve()`` itself stops on SIGTERM/SIGINT."""
    import micro

    service = micro.Service(
        "echo",
        address=f"{HOST}:{port}",
        register=False,
        store="memory",  # not the user's data directory
        **telemetry_options(telemetry),
    )
    service.handle(Echo())
    service.handle(BytesEcho(), name="bench.Echo")
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.serve)
        await anyio.to_thread.run_sync(wait_port, port)
        announce(system, port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("port", type=int)
    parser.add_argument(
        "--telemetry", choices=("bare", "default", "logged", "traced", "full"), default="default"
    )
    args = parser.parse_args()
    if is_grpcio(args.system):
        asyncio.run(serve_grpcio(args.port, args.system))
    elif is_grpclib(args.system):
        asyncio.run(serve_grpclib(args.port, args.system))
    else:
        anyio.run(
            serve_micro,
            args.system,
            args.port,
            args.telemetry,
            backend=backend(args.system),
            backend_options=backend_options(args.system),
        )


if __name__ == "__main__":
    main()
