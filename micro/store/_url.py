"""Options of a store's own in its URL's query (``?timeout=10s&sweep_interval=1m``)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ..config.values import parse_duration

__all__ = ["seconds_option"]


def seconds_option(
    given: float | None, query: Mapping[str, str], name: str, default: float
) -> float:
    """Seconds: ``given``, else the URL's ``name`` (``10s``, ``500ms``, ``2``), else
    ``default``; raises ValueError unless they are positive."""
    if given is None:
        if name not in query:
            return default
        try:
            given = parse_duration(query[name])
        except ValueError as exc:
            raise ValueError(f"?{name}= in the store URL {exc}") from None
    if not given > 0 or not math.isfinite(given):
        raise ValueError(f"the store's {name} must be a positive number of seconds, not {given!r}")
    return given
