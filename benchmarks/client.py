"""Echo client process: ``python client.py SYSTEM PORT --concurrency N``.

Runs one closed-loop unary workload against a server and prints one JSON line
(see ``loadgen.LoadResult``). Every response is checked against its request.
"""

import argparse
from collections.abc import Awaitable, Callable

import anyio
from echo_pb2 import EchoMessage
from loadgen import LoadResult, emit, run_load
from protos import PAYLOAD
from systems import GRPCIO, SYSTEMS, backend

HOST = "127.0.0.1"
CONNECT_TIMEOUT = 20.0

Run = Callable[[Callable[[], Awaitable[None]]], Awaitable[LoadResult]]


def check(resp: EchoMessage) -> None:
    if resp.payload != PAYLOAD:
        raise ValueError(f"echo returned a {len(resp.payload)}-byte payload")


async def client_grpcio(port: int, run: Run) -> LoadResult:
    """One ``grpc.aio`` channel: a single HTTP/2 connection for all workers."""
    import echo_pb2_grpc
    import grpc

    request = EchoMessage(payload=PAYLOAD)
    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
        with anyio.fail_after(CONNECT_TIMEOUT):
            await channel.channel_ready()
        stub = echo_pb2_grpc.EchoStub(channel)

        async def call() -> None:
            check(await stub.Echo(request))

        return await run(call)


async def client_micro(port: int, run: Run) -> LoadResult:
    """One ``micro.Client``: all calls to one address share one HTTP/2 connection."""
    import micro

    request = EchoMessage(payload=PAYLOAD)
    address = f"{HOST}:{port}"
    async with micro.Client() as client:

        async def call() -> None:
            resp = await client.call("echo", "Echo.Echo", request, EchoMessage, address=address)
            check(resp)

        with anyio.fail_after(CONNECT_TIMEOUT):
            await call()  # connect (and fail fast) before the clock starts
        return await run(call)


async def main_async(args: argparse.Namespace) -> None:
    async def run(call: Callable[[], Awaitable[None]]) -> LoadResult:
        return await run_load(
            call,
            system=args.system,
            workload=args.workload,
            concurrency=args.concurrency,
            warmup=args.warmup,
            duration=args.duration,
        )

    if args.system == GRPCIO:
        result = await client_grpcio(args.port, run)
    else:
        result = await client_micro(args.port, run)
    emit(result.to_json())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("system", choices=SYSTEMS)
    parser.add_argument("port", type=int)
    parser.add_argument("--workload", default="unary")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    anyio.run(main_async, args, backend=backend(args.system))


if __name__ == "__main__":
    main()
