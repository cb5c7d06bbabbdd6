"""What connections cost a micro server in memory, and what a rapid-reset flood does to it.

    python benchmarks/memory.py [--connections 1000] [--flood-connections 20]
        [--flood-streams 5000] [--only micro-asyncio,micro-trio]

- **idle**: the echo server's resident size (RSS) before and after this many
  HTTP/2 connections have sent their preface and SETTINGS and been answered;
  reported per connection.
- **rapid reset** (CVE-2023-44487): connections that each open streams and
  reset them at once, as fast as they can, until the server sends GOAWAY or
  has taken them all; reported as the growth of the server's RSS, and its peak.

RSS comes from ``/proc/<pid>/status`` (Linux). The server is ``server.py``, as
in ``run.py``; the flood is written with ``h2`` directly, not with micro.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
from procs import BenchError, Server
from protos import generate

PREFACE_SETTINGS_GRACE = 5.0


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def settled_rss(pid: int, wait: float = 1.0) -> int:
    """RSS once it has stopped moving for a moment (at most a few seconds)."""
    last = rss_kib(pid)[0]
    deadline = time.monotonic() + 5 * wait
    while time.monotonic() < deadline:
        time.sleep(wait)
        now = rss_kib(pid)[0]
        if abs(now - last) < 64:
            return now
        last = now
    return last


def h2_client() -> h2.connection.H2Connection:
    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    return conn


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` HTTP/2 connections, each past its preface and the server's SETTINGS."""
    socks = []
    preface = h2_client().data_to_send()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(preface)
        socks.append(sock)
    for sock in socks:
        sock.settimeout(PREFACE_SETTINGS_GRACE)
        if not sock.recv(65536):
            raise BenchError("the server closed an idle connection at once")
    return socks


def flood(port: int, streams: int) -> tuple[int, str]:
    """Open and reset ``streams`` streams on one connection; (streams sent, how it ended)."""
    conn = h2_client()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    headers = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", f"127.0.0.1:{port}"),
        (":path", "/bench/Echo"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    sent = 0
    ended = "all sent"
    try:
        while sent < streams:
            for _ in range(min(100, streams - sent)):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, headers, end_stream=True)
                conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                sent += 1
            sock.sendall(conn.data_to_send())
        sock.settimeout(2)
        while True:
            data = sock.recv(65536)
            if not data:
                ended = "closed by the server"
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    code = h2.errors._error_code_from_int(event.error_code)
                    return sent, f"GOAWAY {getattr(code, 'name', code)}"
    except TimeoutError:
        pass
    except OSError as exc:
        ended = f"closed by the server ({exc.__class__.__name__})"
    finally:
        sock.close()
    return sent, ended


def measure(system: str, gen_dir: Path, args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {"system": system}
    with Server(system, gen_dir, core=None) as server:
        assert server._proc is not None
        pid = server._proc.pid
        base = settled_rss(pid)
        socks = open_idle(server.port, args.connections)
        loaded = settled_rss(pid)
        result["idle_connections"] = args.connections
        result["rss_base_kib"] = base
        result["rss_idle_kib"] = loaded
        result["kib_per_idle_connection"] = round((loaded - base) / args.connections, 1)
        for sock in socks:
            sock.close()
        before = settled_rss(pid)
        endings: dict[str, int] = {}
        total = 0
        for _ in range(args.flood_connections):
            sent, ended = flood(server.port, args.flood_streams)
            total += sent
            endings[ended] = endings.get(ended, 0) + 1
        after = settled_rss(pid)
        peak = rss_kib(pid)[1]
        result["flood_streams_sent"] = total
        result["flood_endings"] = endings
        result["rss_before_flood_kib"] = before
        result["rss_after_flood_kib"] = after
        result["flood_growth_mib"] = round((after - before) / 1024, 1)
        result["rss_peak_kib"] = peak
        result["flood_peak_growth_mib"] = round((peak - before) / 1024, 1)
        if not server.alive():
            raise BenchError(f"{system} server died:\n{server.stderr_tail()}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--flood-connections", type=int, default=20)
    parser.add_argument("--flood-streams", type=int, default=5000, help="per flood connection")
    parser.add_argument("--only", default="micro-asyncio,micro-trio")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        gen_dir = generate(Path(tmp))
        for system in args.only.split(","):
            res = measure(system, gen_dir, args)
            results.append(res)
            print(
                f"{system}: {res['kib_per_idle_connection']} KiB per idle connection "
                f"({args.connections} connections); rapid reset: "
                f"{res['flood_streams_sent']:,} streams opened and reset on "
                f"{args.flood_connections} connections ({res['flood_endings']}), RSS "
                f"+{res['flood_growth_mib']} MiB after, peak +{res['flood_peak_growth_mib']} MiB",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
