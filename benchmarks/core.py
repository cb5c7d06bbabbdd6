"""CPU time per unary call in the sans-IO HTTP/2 core alone: ``python benchmarks/core.py``.

A client and a server connection (``micro.transport.h2conn``) wired back to back, no sockets
and no event loop: each call is a gRPC request (headers, one 100-byte message) and its
answer (headers, the message, trailers), both sides' bytes handed across and their
received data acknowledged as the drivers do. CPU time (``time.process_time``), so a busy
machine slows it less than it slows the wall-clock benchmarks.

Which build of the core is measured is printed: the pure-Python modules, or the compiled
ones when they come first on the path (``PYTHONPATH=build/compiled``, from ``nox -s
compiled``). ``--kind h2`` measures the h2 library behind the same calls.

``--servers micro-asyncio,micro-compiled-asyncio,...`` measures whole calls instead: the
CPU time a server process of each system spends per call under ``h2load -c1 -m1``, the
systems taken in turn each round.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import h2load_bench
import procs
import protos
from systems import echo_path

import micro.transport
from micro.transport.h2conn import new_connection, start

REQUEST = [
    (":method", "POST"),
    (":scheme", "http"),
    (":path", "/bench.Echo/Echo"),
    (":authority", "127.0.0.1"),
    ("content-type", "application/grpc"),
    ("te", "trailers"),
    ("grpc-timeout", "5000m"),
]
RESPONSE = [(":status", "200"), ("content-type", "application/grpc")]
TRAILERS = [("grpc-status", "0")]
MESSAGE = b"\x00\x00\x00\x00\x64" + bytes(100)


def acknowledge(conn: Any, events: list[Any]) -> None:
    for event in events:
        length = getattr(event, "flow_controlled_length", None)
        if length:
            conn.acknowledge_received_data(length, event.stream_id)


def calls(kind: str, count: int) -> float:
    """Seconds of CPU for ``count`` calls on one fresh pair of connections."""
    client = new_connection(client_side=True, kind=kind)
    server = new_connection(client_side=False, kind=kind)
    start(client)
    start(server)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    began = time.process_time()
    for _ in range(count):
        sid = client.get_next_available_stream_id()
        client.send_headers(sid, REQUEST)
        client.send_data(sid, MESSAGE, end_stream=True)
        acknowledge(server, server.receive_data(client.data_to_send()))
        server.send_headers(sid, RESPONSE)
        server.send_data(sid, MESSAGE)
        server.send_headers(sid, TRAILERS, end_stream=True)
        acknowledge(client, client.receive_data(server.data_to_send()))
        server.receive_data(client.data_to_send())
    return time.process_time() - began


def server_cpu(systems: list[str], calls: int, rounds: int) -> None:
    """Print each system's server CPU microseconds per call under ``h2load -c1 -m1``."""
    pin = procs.pinning_available()
    server_core, client_core = (procs.SERVER_CORE, procs.CLIENT_CORE) if pin else (None, None)
    per_call: dict[str, list[float]] = {system: [] for system in systems}
    with tempfile.TemporaryDirectory(prefix="micro-bench-") as tmp:
        gen_dir = protos.generate(Path(tmp) / "gen")
        sys.path.insert(0, str(gen_dir))
        from echo_pb2 import EchoMessage

        body = Path(tmp) / "echo.grpc"
        body.write_bytes(protos.grpc_frame(EchoMessage(payload=protos.PAYLOAD).SerializeToString()))
        for _ in range(rounds):
            for system in systems:
                with procs.Server(system, gen_dir, server_core) as server:
                    path = echo_path(system)
                    h2load_bench.h2load(server.port, path, body, 2_000, 1, client_core)  # warm-up
                    before = server.cpu_seconds()
                    h2load_bench.h2load(server.port, path, body, calls, 1, client_core)
                    per_call[system].append((server.cpu_seconds() - before) / calls * 1e6)
    for system, values in per_call.items():
        median = round(statistics.median(values), 1)
        rounded = [round(v, 1) for v in values]
        print(json.dumps({"system": system, "server_us_per_call": median, "rounds": rounded}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("micro", "h2"), default="micro")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--servers", help="comma-separated systems (see run.py --help)")
    args = parser.parse_args()
    if args.servers:
        server_cpu(args.servers.split(","), args.calls, args.rounds)
        return
    calls(args.kind, 1_000)  # warm-up
    per_call = [calls(args.kind, args.calls) / args.calls * 1e6 for _ in range(args.rounds)]
    result = {
        "kind": args.kind,
        "compiled": micro.transport.compiled if args.kind == "micro" else False,
        "us_per_call": round(statistics.median(per_call), 2),
        "rounds": [round(v, 2) for v in per_call],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
