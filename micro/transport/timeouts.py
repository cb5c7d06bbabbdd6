"""The ``grpc-timeout`` header: ``<up to 8 digits><unit>`` with units H M S m u n."""

from __future__ import annotations

from ..errors import BadRequest

__all__ = ["parse_grpc_timeout", "format_grpc_timeout"]

_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_MAX = 99_999_999


def parse_grpc_timeout(value: str) -> float:
    """Seconds for a ``grpc-timeout`` value; raises BadRequest when malformed."""
    digits = value[:-1]
    if not (2 <= len(value) <= 9 and value[-1] in _UNITS and digits.isascii() and digits.isdigit()):
        raise BadRequest(f"malformed grpc-timeout {value!r}")
    return int(value[:-1]) * _UNITS[value[-1]]


def format_grpc_timeout(seconds: float) -> str:
    """The shortest exact-enough ``grpc-timeout`` for ``seconds`` (at least 1 ns)."""
    if seconds <= 0:
        return "1n"
    if seconds != seconds or seconds == float("inf"):  # NaN or infinity: the longest we can say
        return f"{_MAX}H"
    for unit, scale in (("n", 1e-9), ("u", 1e-6), ("m", 1e-3), ("S", 1.0), ("M", 60.0)):
        amount = -(-seconds // scale)  # ceil, so we never promise less time than we have
        if amount <= _MAX:
            return f"{int(amount)}{unit}"
    return f"{min(int(-(-seconds // 3600.0)), _MAX)}H"
