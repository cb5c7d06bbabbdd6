"""Node selection: which node of a service takes the next call."""

from .base import RandomSelector, RoundRobinSelector, Selector

__all__ = ["RandomSelector", "RoundRobinSelector", "Selector"]
