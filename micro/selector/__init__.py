"""Node selection: strategies, and the health of nodes (outlier ejection)."""

from .base import (
    ConsistentHashSelector,
    LeastInflightSelector,
    RandomSelector,
    RoundRobinSelector,
    Selector,
    from_name,
)
from .health import NodeHealth

__all__ = [
    "ConsistentHashSelector",
    "LeastInflightSelector",
    "NodeHealth",
    "RandomSelector",
    "RoundRobinSelector",
    "Selector",
    "from_name",
]
