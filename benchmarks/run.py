"""Echo RPC benchmark: grpcio and grpclib vs micro (asyncio and trio), pinned apart.

Usage: ``python benchmarks/run.py [--workloads unary,stream,large] [--duration S]
[--rounds N] [--quick] [--only a,b]``.
See README.md in this folder for what is measured and how to read the output.
"""

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import h2load_bench
import procs
import protos
from loadgen import LoadResult
from report import Results, render
from systems import (
    COMPILED_DIR,
    DEFAULT_SYSTEMS,
    GRPCLIB,
    MICRO_COMPILED_ASYNCIO,
    SYSTEMS,
    echo_path,
    is_compiled,
    is_micro,
)

WORKLOADS: tuple[str, ...] = ("unary", "stream", "large")
"""unary: 1 caller, 64 in flight, h2load -m1 and -m64; stream: one bidi stream;
large: 1 MiB echoes."""

# (metric prefix, calls in flight on one connection) of the unary workload
UNARY: tuple[tuple[str, int], ...] = (("seq", 1), ("c64", 64))

MIB = 1024 * 1024


def csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def log(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds (5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians reported (3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s")
    parser.add_argument(
        "--only",
        type=csv,
        default=list(DEFAULT_SYSTEMS),
        help=(
            f"comma-separated systems to run, of {','.join(SYSTEMS)}"
            f" (default: {','.join(DEFAULT_SYSTEMS)})"
        ),
    )
    parser.add_argument(
        "--workloads",
        type=csv,
        default=list(WORKLOADS),
        help=f"comma-separated workloads to run (default: {','.join(WORKLOADS)})",
    )
    parser.add_argument(
        "--window", type=int, default=1000, help="stream: most messages in flight (1000)"
    )
    parser.add_argument("--no-h2load", action="store_true", help="skip the h2load workload")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--json", type=Path, help="also write all per-round values here")
    args = parser.parse_args(argv)
    unknown = [s for s in args.only if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s) {unknown}; choose from {list(SYSTEMS)}")
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)}")
    if args.window < 2:
        parser.error("--window must be at least 2")
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    return args


def micro_importable(env: dict[str, str]) -> str | None:
    """None if a child can import ``micro.Service`` and ``micro.Client``, else the reason."""
    check = "from micro import Client, Service"
    try:
        procs.run_child([sys.executable, "-c", check], timeout=60, env=env)
    except procs.BenchError as exc:
        return str(exc).strip().splitlines()[-1]
    return None


def run_client(
    server: procs.Server,
    options: list[str],
    args: argparse.Namespace,
    env: dict[str, str],
    core: int | None,
) -> LoadResult:
    """Run one client process (``client.py`` ``options``) and return its result."""
    cmd = [sys.executable, str(procs.HERE / "client.py"), server.system, str(server.port)]
    cmd += [*options, "--warmup", str(args.warmup), "--duration", str(args.duration)]
    timeout = args.warmup + args.duration + 60
    env = procs.system_env(env, server.system)
    out = procs.run_child(procs.pinned(cmd, core), timeout=timeout, env=env)
    return LoadResult(**procs.last_json_line(out))


def compiled_missing(env: dict[str, str]) -> str | None:
    """None if a child on the compiled systems' path imports the compiled core, else why not."""
    check = "import micro.transport as t; assert t.compiled, t.http2.__file__"
    env = procs.system_env(env, MICRO_COMPILED_ASYNCIO)
    try:  # -P: not the working directory first on the path, as for the benchmark's scripts
        procs.run_child([sys.executable, "-P", "-c", check], timeout=60, env=env)
    except procs.BenchError as exc:
        return f"{COMPILED_DIR}: {str(exc).strip().splitlines()[-1]}"
    return None


def check_result(results: Results, tag: str, res: LoadResult) -> None:
    if res.errors:
        results.fail(f"{tag} {res.workload}: {res.errors} errors, first: {res.first_error}")


def bench_system(
    system: str,
    round_no: int,
    args: argparse.Namespace,
    gen_dir: Path,
    body: Path,
    results: Results,
    pin: bool,
) -> None:
    """One round of every workload against one fresh server process."""
    server_core = procs.SERVER_CORE if pin else None
    client_core = procs.CLIENT_CORE if pin else None
    env = procs.child_env(gen_dir)
    tag = f"round {round_no} {system}"
    with procs.Server(system, gen_dir, server_core) as server:
        for workload in WORKLOADS:
            if workload not in args.workloads:
                continue
            try:
                RUNNERS[workload](server, tag, args, env, body, results, client_core)
            except procs.BenchError as exc:  # go on with the next workload if the server lives
                results.fail(f"{tag} {workload}: {exc}")
                log(f"  {tag} {workload} FAILED: {exc}")
            if not server.alive():
                raise procs.BenchError(f"server died:\n{server.stderr_tail()}")


def bench_unary(
    server: procs.Server,
    tag: str,
    args: argparse.Namespace,
    env: dict[str, str],
    body: Path,
    results: Results,
    core: int | None,
) -> None:
    """1 caller and 64 in flight from a client process, then h2load alone."""
    system = server.system
    for prefix, concurrency in UNARY:
        options = ["--workload", prefix, "--concurrency", str(concurrency)]
        res = run_client(server, options, args, env, core)
        check_result(results, tag, res)
        results.add(system, f"{prefix}_req_s", res.req_s)
        results.add(system, f"{prefix}_p50_ms", res.p50_ms)
        results.add(system, f"{prefix}_p99_ms", res.p99_ms)
        log(
            f"  {tag}: {concurrency:>2} in flight {res.req_s:9,.0f} req/s"
            f"  p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms  errors {res.errors}"
        )
        if not server.alive():
            return
    if not args.no_h2load:
        path = echo_path(system)
        for streams in h2load_bench.STREAMS:
            rate = h2load_bench.measure(
                server.port, path, body, streams, args.warmup, args.duration, core
            )
            results.add(system, f"h2load{streams}_req_s", rate)
            log(f"  {tag}: h2load -c1 -m{streams} {rate:9,.0f} req/s")


def bench_stream(
    server: procs.Server,
    tag: str,
    args: argparse.Namespace,
    env: dict[str, str],
    body: Path,
    results: Results,
    core: int | None,
) -> None:
    """Echoed messages per second on one bidirectional stream."""
    options = ["--mode", "stream", "--workload", "stream", "--window", str(args.window)]
    res = run_client(server, options, args, env, core)
    check_result(results, tag, res)
    if not res.errors:  # a broken stream's count says nothing about its rate
        results.add(server.system, "stream_msg_s", res.req_s)
    log(f"  {tag}: 1 stream, window {args.window} {res.req_s:9,.0f} msg/s  errors {res.errors}")


def bench_large(
    server: procs.Server,
    tag: str,
    args: argparse.Namespace,
    env: dict[str, str],
    body: Path,
    results: Results,
    core: int | None,
) -> None:
    """1 MiB unary echoes, one caller: MiB/s of request + response payloads, latency."""
    options = ["--workload", "large", "--payload-bytes", str(protos.LARGE_PAYLOAD_BYTES)]
    res = run_client(server, options, args, env, core)
    check_result(results, tag, res)
    mib_s = res.req_s * 2 * res.payload_bytes / MIB  # request + response payloads
    results.add(server.system, "large_mib_s", mib_s)
    results.add(server.system, "large_p50_ms", res.p50_ms)
    results.add(server.system, "large_p99_ms", res.p99_ms)
    log(
        f"  {tag}: 1 MiB echo {res.req_s:7,.1f} req/s {mib_s:7,.1f} MiB/s"
        f"  p50 {res.p50_ms:6.2f} ms  p99 {res.p99_ms:6.2f} ms  errors {res.errors}"
    )


RUNNERS = {"unary": bench_unary, "stream": bench_stream, "large": bench_large}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin = not args.no_pin and procs.pinning_available()
    if not args.no_pin and not pin:
        log("taskset or cores 0/1 unavailable: running unpinned")
    if "unary" not in args.workloads:
        args.no_h2load = True
    if not args.no_h2load and not h2load_bench.available():
        log("h2load not found (Debian package nghttp2-client): skipping the h2load workload")
        args.no_h2load = True

    with tempfile.TemporaryDirectory(prefix="micro-bench-") as tmp:
        gen_dir = protos.generate(Path(tmp) / "gen")
        env = procs.child_env(gen_dir)
        systems = [s for s in SYSTEMS if s in args.only]
        if any(is_micro(s) for s in systems) and (why := micro_importable(env)):
            log(f"micro is not importable ({why}): skipping micro systems")
            systems = [s for s in systems if not is_micro(s)]
        if any(is_compiled(s) for s in systems) and (why := compiled_missing(env)):
            log(f"the compiled core is not in use ({why}; build it: nox -s compiled): skipping it")
            systems = [s for s in systems if not is_compiled(s)]
        if GRPCLIB in systems and importlib.util.find_spec("grpclib") is None:
            log("grpclib is not installed (pip install grpclib): skipping it")
            systems.remove(GRPCLIB)
        if not systems:
            log("nothing to run")
            return 1

        sys.path.insert(0, str(gen_dir))
        from echo_pb2 import EchoMessage

        body = Path(tmp) / "echo.grpc"
        body.write_bytes(protos.grpc_frame(EchoMessage(payload=protos.PAYLOAD).SerializeToString()))

        results = Results(systems)
        started = time.monotonic()
        log(
            f"{args.rounds} round(s) x {len(systems)} system(s), workloads"
            f" {','.join(w for w in WORKLOADS if w in args.workloads)}, {args.warmup:g} s warm-up"
            f" + {args.duration:g} s measured, {'pinned to cores 0/1' if pin else 'unpinned'}"
        )
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(systems)
            for system in systems[shift:] + systems[:shift]:  # alternate the order
                try:
                    bench_system(system, round_no, args, gen_dir, body, results, pin)
                except procs.BenchError as exc:
                    results.fail(f"round {round_no} {system}: {exc}")
                    log(f"  round {round_no} {system} FAILED: {exc}")
        log(f"done in {time.monotonic() - started:.0f} s")

    print()
    print(f"Medians of {args.rounds} round(s), {args.duration:g} s each:")
    print()
    print(render(results))
    if args.json:
        results.dump(args.json)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
