"""The systems under test and their parts."""

from micro.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

GRPCIO = "grpcio"
#: grpcio with the glibc malloc thresholds micro sets in its own processes
GRPCIO_MALLOC = "grpcio-malloc"
MICRO_ASYNCIO = "micro-asyncio"
MICRO_TRIO = "micro-trio"

SYSTEMS: tuple[str, ...] = (GRPCIO, GRPCIO_MALLOC, MICRO_ASYNCIO, MICRO_TRIO)
#: systems micro is compared with, each in its own table of ratios
REFERENCES: tuple[str, ...] = (GRPCIO, GRPCIO_MALLOC)


def backend(system: str) -> str:
    """The AnyIO backend a system's processes run on."""
    return "trio" if system == MICRO_TRIO else "asyncio"


def is_micro(system: str) -> bool:
    return system.startswith("micro")


def is_grpcio(system: str) -> bool:
    return system.startswith("grpcio")


def environment(system: str) -> dict[str, str]:
    """Variables a system's server and client processes run with, beyond the usual."""
    if system == GRPCIO_MALLOC:
        tunables = (
            f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}"
            f":glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
        )
        return {"GLIBC_TUNABLES": tunables}
    return {}
