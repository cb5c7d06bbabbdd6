"""Echo client process: ``python client.py SYSTEM PORT [--mode unary|stream] ...``.

``--mode unary`` (default) runs one closed-loop unary workload (``--concurrency``
callers, ``--payload-bytes`` per request); ``--mode stream`` sends and receives on
one bidirectional ``Echo.Stream`` call with at most ``--window`` messages in flight.
Prints one JSON line (see ``loadgen.LoadResult``). Every response is checked
against its request.
"""

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from echo_pb2 import EchoMessage
from loadgen import LoadResult, StreamMeter, emit, run_load
from protos import PAYLOAD, payload
from systems import SYSTEMS, backend, backend_options, is_bytes, is_grpcio, is_grpclib

HOST = "127.0.0.1"
CONNECT_TIMEOUT = 20.0


def describe(exc: BaseException) -> str:
    """``Type: message`` of the first leaf exception (task groups wrap them in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def checker(expected: bytes) -> Callable[[EchoMessage], None]:
    def check(resp: EchoMessage) -> None:
        if resp.payload != expected:
            raise ValueError(
                f"echo returned a different {len(resp.payload)}-byte payload"
                f" (sent {len(expected)} bytes)"
            )

    return check


async def unary_grpcio(port: int, args: argparse.Namespace) -> LoadResult:
    """One ``grpc.aio`` channel: a single HTTP/2 connection for all workers."""
    import echo_pb2_grpc
    import grpc

    data = payload(args.payload_bytes)
    check = checker(data)
    request = EchoMessage(payload=data)
    # 1 MiB fits grpcio's default 4 MiB receive limit (and micro's).
    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
        with anyio.fail_after(CONNECT_TIMEOUT):
            await channel.channel_ready()
        stub = echo_pb2_grpc.EchoStub(channel)

        async def call() -> None:
            check(await stub.Echo(request))

        return await run_unary(call, args)


async def unary_micro(port: int, args: argparse.Namespace) -> LoadResult:
    """One ``micro.Client``: all calls to one address share one HTTP/2 connection."""
    import micro

    data = payload(args.payload_bytes)
    check = checker(data)
    request = EchoMessage(payload=data)
    address = f"{HOST}:{port}"
    async with micro.Client() as client:

        async def call() -> None:
            resp = await client.call("echo", "Echo.Echo", request, EchoMessage, address=address)
            check(resp)

        with anyio.fail_after(CONNECT_TIMEOUT):
            await call()  # connect (and fail fast) before the clock starts
        return await run_unary(call, args)


async def unary_grpclib(port: int, args: argparse.Namespace) -> LoadResult:
    """One grpclib ``Channel``: a single HTTP/2 connection for all workers."""
    from grpclib.client import Channel, UnaryUnaryMethod

    data = payload(args.payload_bytes)
    check = checker(data)
    request = EchoMessage(payload=data)
    channel = Channel(HOST, port)
    try:
        echo = UnaryUnaryMethod(channel, "/Echo/Echo", EchoMessage, EchoMessage)

        async def call() -> None:
            check(await echo(request))

        with anyio.fail_after(CONNECT_TIMEOUT):
            await call()
        return await run_unary(call, args)
    finally:
        channel.close()


async def unary_micro_bytes(port: int, args: argparse.Namespace) -> LoadResult:
    """``micro.Client`` calling a ``bytes`` handler with ``content_type="application/grpc"``."""
    import micro

    data = payload(args.payload_bytes)
    address = f"{HOST}:{port}"
    async with micro.Client() as client:

        async def call() -> None:
            resp = await client.call(
                "bench",
                "bench.Echo.Echo",
                data,
                bytes,
                content_type="application/grpc",
                address=address,
            )
            if resp != data:
                raise ValueError(f"echo returned {len(resp)} different bytes")

        with anyio.fail_after(CONNECT_TIMEOUT):
            await call()
        return await run_unary(call, args)


async def run_unary(call: Callable[[], Awaitable[None]], args: argparse.Namespace) -> LoadResult:
    return await run_load(
        call,
        system=args.system,
        workload=args.workload,
        concurrency=args.concurrency,
        warmup=args.warmup,
        duration=args.duration,
        payload_bytes=args.payload_bytes,
    )


async def stream_grpcio(port: int, args: argparse.Namespace) -> LoadResult:
    """A ``grpc.aio`` stream-stream call fed by a request async iterator.

    grpc.aio consumes the iterator in its own task (the sender); this task reads
    the responses (the receiver).
    """
    import echo_pb2_grpc
    import grpc

    check = checker(PAYLOAD)
    request = EchoMessage(payload=PAYLOAD)
    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
        with anyio.fail_after(CONNECT_TIMEOUT):
            await channel.channel_ready()
        stub = echo_pb2_grpc.EchoStub(channel)
        meter = StreamMeter(args.window, args.warmup, args.duration)

        async def requests() -> AsyncIterator[EchoMessage]:
            while meter.sending():
                await meter.before_send()
                yield request

        error = None
        try:
            async for resp in stub.Stream(requests()):
                check(resp)
                meter.received_one()
        except Exception as exc:  # reported in the result, not raised
            error = describe(exc)
        return meter.result(system=args.system, payload_bytes=len(PAYLOAD), first_error=error)


async def stream_micro(port: int, args: argparse.Namespace) -> LoadResult:
    """``client.stream`` on ``Echo.Stream``: a sender task and this task receiving."""
    import micro

    check = checker(PAYLOAD)
    request = EchoMessage(payload=PAYLOAD)
    address = f"{HOST}:{port}"
    async with micro.Client() as client:
        with anyio.fail_after(CONNECT_TIMEOUT):  # connect (and fail fast) first
            check(await client.call("echo", "Echo.Echo", request, EchoMessage, address=address))
        meter = StreamMeter(args.window, args.warmup, args.duration)
        error = None
        try:
            async with (
                client.stream(
                    "echo", "Echo.Stream", response_type=EchoMessage, address=address
                ) as s,
                anyio.create_task_group() as tg,
            ):

                async def sender() -> None:
                    while meter.sending():
                        await meter.before_send()
                        await s.send(request)
                    await s.close_send()

                tg.start_soon(sender)
                while True:
                    try:
                        resp = await s.receive()
                    except anyio.EndOfStream:
                        break
                    check(resp)
                    meter.received_one()
        except Exception as exc:  # reported in the result, not raised
            error = describe(exc)
        return meter.result(system=args.system, payload_bytes=len(PAYLOAD), first_error=error)


async def stream_grpclib(port: int, args: argparse.Namespace) -> LoadResult:
    """A grpclib stream-stream call: a sender task and this task receiving."""
    from grpclib.client import Channel, StreamStreamMethod

    check = checker(PAYLOAD)
    request = EchoMessage(payload=PAYLOAD)
    channel = Channel(HOST, port)
    meter = StreamMeter(args.window, args.warmup, args.duration)
    error = None
    try:
        method = StreamStreamMethod(channel, "/Echo/Stream", EchoMessage, EchoMessage)
        async with method.open() as stream, anyio.create_task_group() as tg:
            await stream.send_request()  # headers first: receiving needs them sent

            async def sender() -> None:
                while meter.sending():
                    await meter.before_send()
                    await stream.send_message(request)
                await stream.end()

            tg.start_soon(sender)
            async for resp in stream:
                check(resp)
                meter.received_one()
    except Exception as exc:  # reported in the result, not raised
        error = describe(exc)
    finally:
        channel.close()
    return meter.result(system=args.system, payload_bytes=len(PAYLOAD), first_error=error)


async def main_async(args: argparse.Namespace) -> None:
    run: Callable[[int, argparse.Namespace], Awaitable[LoadResult]]
    if args.mode == "stream":
        if is_grpcio(args.system):
            run = stream_grpcio
        elif is_grpclib(args.system):
            run = stream_grpclib
        else:
            run = stream_micro
    elif is_grpcio(args.system):
        run = unary_grpcio
    elif is_grpclib(args.system):
        run = unary_grpclib
    elif is_bytes(args.system):
        run = unary_micro_bytes
    else:
        run = unary_micro
    result = await run(args.port, args)
    emit(result.to_json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("port", type=int)
    parser.add_argument("--mode", choices=("unary", "stream"), default="unary")
    parser.add_argument("--workload", default="unary", help="label for the result")
    parser.add_argument("--concurrency", type=int, default=1, help="unary callers")
    parser.add_argument("--payload-bytes", type=int, default=len(PAYLOAD), help="unary only")
    parser.add_argument("--window", type=int, default=1000, help="stream: messages in flight")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    anyio.run(
        main_async,
        args,
        backend=backend(args.system),
        backend_options=backend_options(args.system),
    )


if __name__ == "__main__":
    main()
