"""The systems under test and their parts."""

import os
from pathlib import Path

from micro.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

GRPCIO = "grpcio"
#: grpcio with the glibc malloc thresholds micro sets in its own processes
GRPCIO_MALLOC = "grpcio-malloc"
#: grpclib, the other pure-Python gRPC stack (asyncio, h2)
GRPCLIB = "grpclib"
MICRO_ASYNCIO = "micro-asyncio"
MICRO_TRIO = "micro-trio"
#: micro as the README shows it for raw payloads: a ``bytes`` handler named ``bench.Echo``,
#: called with ``content_type="application/grpc"``
MICRO_ASYNCIO_BYTES = "micro-asyncio-bytes"
MICRO_TRIO_BYTES = "micro-trio-bytes"
#: micro on asyncio with uvloop's event loop (the ``uvloop`` extra): reported on its own,
#: as an optional acceleration, not part of the default install's figures
MICRO_UVLOOP = "micro-uvloop"
MICRO_UVLOOP_BYTES = "micro-uvloop-bytes"
#: micro with the compiled (mypyc) build of its HTTP/2 core, imported from COMPILED_DIR:
#: reported on its own, as an optional acceleration, like uvloop
MICRO_COMPILED_ASYNCIO = "micro-compiled-asyncio"
MICRO_COMPILED_TRIO = "micro-compiled-trio"
#: where ``nox -s compiled`` unpacks the compiled build (MICRO_COMPILED_DIR to override)
COMPILED_DIR = Path(
    os.environ.get("MICRO_COMPILED_DIR", Path(__file__).resolve().parent.parent / "build/compiled")
)

SYSTEMS: tuple[str, ...] = (
    GRPCIO,
    GRPCIO_MALLOC,
    GRPCLIB,
    MICRO_ASYNCIO,
    MICRO_TRIO,
    MICRO_ASYNCIO_BYTES,
    MICRO_TRIO_BYTES,
    MICRO_UVLOOP,
    MICRO_UVLOOP_BYTES,
    MICRO_COMPILED_ASYNCIO,
    MICRO_COMPILED_TRIO,
)
#: the systems run unless ``--only`` says otherwise
DEFAULT_SYSTEMS: tuple[str, ...] = (GRPCIO, GRPCIO_MALLOC, GRPCLIB, MICRO_ASYNCIO, MICRO_TRIO)
#: systems micro is compared with, each in its own table of ratios
REFERENCES: tuple[str, ...] = (GRPCIO, GRPCIO_MALLOC, GRPCLIB)
#: the gRPC path of the echo endpoint, by system
ECHO_PATH = "/Echo/Echo"
BYTES_ECHO_PATH = "/bench.Echo/Echo"


def backend(system: str) -> str:
    """The AnyIO backend a system's processes run on."""
    return "trio" if system.startswith(MICRO_TRIO) or system == MICRO_COMPILED_TRIO else "asyncio"


def backend_options(system: str) -> dict[str, bool]:
    """anyio.run's backend_options for a system's processes."""
    return {"use_uvloop": True} if system.startswith(MICRO_UVLOOP) else {}


def is_micro(system: str) -> bool:
    return system.startswith("micro")


def is_bytes(system: str) -> bool:
    """micro with a ``bytes`` handler rather than the protobuf one."""
    return is_micro(system) and system.endswith("-bytes")


def is_grpcio(system: str) -> bool:
    return system.startswith("grpcio")


def is_grpclib(system: str) -> bool:
    return system == GRPCLIB


def echo_path(system: str) -> str:
    return BYTES_ECHO_PATH if is_bytes(system) else ECHO_PATH


def is_compiled(system: str) -> bool:
    """micro with the compiled build of its HTTP/2 core."""
    return system in (MICRO_COMPILED_ASYNCIO, MICRO_COMPILED_TRIO)


def python_path(system: str) -> list[str]:
    """Directories a system's processes import from before the usual ones."""
    return [str(COMPILED_DIR)] if is_compiled(system) else []


def environment(system: str) -> dict[str, str]:
    """Variables a system's server and client processes run with, beyond the usual."""
    if system == GRPCIO_MALLOC:
        tunables = (
            f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}"
            f":glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
        )
        return {"GLIBC_TUNABLES": tunables}
    return {}
