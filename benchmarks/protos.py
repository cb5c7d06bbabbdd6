"""Generate the Python modules for ``echo.proto`` at run time."""

import subprocess
import sys
from pathlib import Path

PROTO = Path(__file__).resolve().parent / "echo.proto"

PAYLOAD = b"x" * 100
"""The payload of the small echo workloads (unary and stream, ~100 bytes)."""

LARGE_PAYLOAD_BYTES = 1024 * 1024
"""The payload size of the ``large`` workload (1 MiB)."""


def payload(size: int) -> bytes:
    """``PAYLOAD`` for its own size, else ``size`` bytes of a repeating 0..255 pattern.

    A varied pattern lets the echo check catch misordered or misjoined frames.
    """
    if size == len(PAYLOAD):
        return PAYLOAD
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def generate(out_dir: Path) -> Path:
    """Write ``echo_pb2.py``, ``echo_pb2.pyi`` and ``echo_pb2_grpc.py`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO.parent}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        str(PROTO),
    ]
    subprocess.run(cmd, check=True)
    return out_dir


def grpc_frame(message: bytes) -> bytes:
    """Wrap a serialized message in the gRPC length prefix (uncompressed)."""
    return b"\x00" + len(message).to_bytes(4, "big") + message
