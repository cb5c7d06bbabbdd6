"""What observability costs: unary echo with telemetry off, at its defaults, and all on.

    python benchmarks/observability.py [--rounds 3] [--duration 5] [--backend asyncio|trio]

Servers (each its own process, pinned apart from the client when ``taskset`` exists):

- ``grpcio``: the reference, as in ``run.py``;
- ``micro bare``: metrics, tracing and the request log turned off;
- ``micro default``: what a service runs with no options (Prometheus metrics on,
  tracing waiting for a tracer provider, the request log at DEBUG and so silent);
- ``micro logged``: metrics and a JSON access-log line per call;
- ``micro traced``: metrics and an OpenTelemetry SDK tracer provider with a batch
  span processor, every call sampled;
- ``micro full``: metrics, spans and the access log.

The client is ``client.py`` (micro's on micro servers, grpc.aio on grpcio), with one
caller and with 64 calls in flight on one connection. For each, two figures: calls
per second, and the server process's CPU time per call (read from /proc around the
measured window), which other load on the machine disturbs much less than
throughput. Medians of the rounds are printed with each figure's ratio to
``micro bare`` and to grpcio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import procs
import protos
from loadgen import LoadResult
from systems import GRPCIO, MICRO_ASYNCIO, MICRO_TRIO

LEVELS = ("bare", "default", "logged", "traced", "full")
UNARY = (("1 caller", 1), ("64 in flight", 64))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(
    server: procs.Server, concurrency: int, args: argparse.Namespace, env: dict[str, str]
) -> tuple[LoadResult, float]:
    """One client run: its result and the server's CPU microseconds per call."""
    cmd = [sys.executable, str(procs.HERE / "client.py"), server.system, str(server.port)]
    cmd += ["--concurrency", str(concurrency), "--workload", f"c{concurrency}"]
    cmd += ["--warmup", str(args.warmup), "--duration", str(args.duration)]
    core = procs.CLIENT_CORE if args.pin else None
    before = server.cpu_seconds()
    out = procs.run_child(procs.pinned(cmd, core), timeout=args.duration + 90, env=env)
    cpu = server.cpu_seconds() - before
    result = LoadResult(**procs.last_json_line(out))
    if result.errors:
        raise procs.BenchError(f"{result.errors} errors, first: {result.first_error}")
    # The CPU time covers the warm-up too, when calls went at about the same rate.
    calls = result.requests * (args.warmup + args.duration) / result.duration_s
    return result, cpu / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args()
    args.pin = not args.no_pin and procs.pinning_available()
    micro_system = MICRO_TRIO if args.backend == "trio" else MICRO_ASYNCIO
    configs: list[tuple[str, str, tuple[str, ...]]] = [
        ("grpcio", GRPCIO, ()),
        *((f"micro {level}", micro_system, ("--telemetry", level)) for level in LEVELS),
    ]
    figures: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="micro-bench-") as tmp:
        gen_dir = protos.generate(Path(tmp) / "gen")
        env = procs.child_env(gen_dir)
        for round_no in range(1, args.rounds + 1):
            for label, system, options in configs:
                core = procs.SERVER_CORE if args.pin else None
                with procs.Server(system, gen_dir, core, options) as server:
                    for name, concurrency in UNARY:
                        result, cpu_us = measure(server, concurrency, args, env)
                        figures.setdefault((label, name), []).append(result.req_s)
                        figures.setdefault((label, f"{name} cpu"), []).append(cpu_us)
                        log(
                            f"round {round_no} {label:13} {name:12}"
                            f" {result.req_s:9,.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                            f"  server CPU {cpu_us:6.1f} us/call"
                        )
    labels = [label for label, _, _ in configs]
    columns = [(f"{name} req/s", name) for name, _ in UNARY]
    columns += [(f"{name} CPU us/call", f"{name} cpu") for name, _ in UNARY]
    print(f"\nunary echo, {args.backend}, medians of {args.rounds} round(s)\n")
    print(f"{'server':15}{'figure':>22}{'value':>10}{'/ bare':>9}{'/ grpcio':>10}")
    for title, key in columns:
        for label in labels:
            value = statistics.median(figures[(label, key)])
            bare = statistics.median(figures[("micro bare", key)])
            grpcio = statistics.median(figures[("grpcio", key)])
            print(f"{label:15}{title:>22}{value:10,.1f}{value / bare:9.2f}{value / grpcio:10.2f}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
