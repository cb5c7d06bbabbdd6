"""The systems under test and their parts."""

GRPCIO = "grpcio"
MICRO_ASYNCIO = "micro-asyncio"
MICRO_TRIO = "micro-trio"

SYSTEMS: tuple[str, ...] = (GRPCIO, MICRO_ASYNCIO, MICRO_TRIO)
REFERENCE = GRPCIO


def backend(system: str) -> str:
    """The AnyIO backend a system's processes run on."""
    return "trio" if system == MICRO_TRIO else "asyncio"


def is_micro(system: str) -> bool:
    return system.startswith("micro")
