"""Merging config layers and finding values in them by dotted key: pure functions.

A config is a tree of dicts whose leaves are values (strings, numbers, bools,
lists, None). Layers merge key by key at any depth: where both layers hold a
dict the dicts are merged, anywhere else the later layer's value replaces the
earlier one (lists too, whole: merging lists element by element would make a
shorter list impossible to express). Results never share containers with the
inputs, so nothing a caller does to one changes the other.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["MISSING", "merge", "lookup", "split_key", "nest"]


class _Missing:
    """The marker for "no value here" (None is a value: YAML's ``null``)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


def merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """The layers merged in order, later ones overriding earlier ones key by key."""
    result: dict[str, Any] = {}
    for layer in layers:
        _merge_into(result, layer)
    return result


def _merge_into(target: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        here = target.get(key)
        if isinstance(here, dict) and isinstance(value, Mapping):
            _merge_into(here, value)
        elif isinstance(value, Mapping):
            target[key] = merge(value)
        else:
            target[key] = copy.deepcopy(value)


def split_key(key: str) -> list[str]:
    """``"database.host"`` → ``["database", "host"]``; ``""`` is the whole config."""
    return [part for part in key.split(".") if part] if key else []


def lookup(data: Any, key: str | Sequence[str]) -> Any:
    """The value at a dotted key (list items by index: ``servers.0.host``), or MISSING.

    The value is the tree's own object, not a copy.
    """
    parts = split_key(key) if isinstance(key, str) else key
    node = data
    for part in parts:
        if isinstance(node, Mapping):
            if part not in node:
                return MISSING
            node = node[part]
        elif isinstance(node, list) and part.lstrip("-").isdigit():
            index = int(part)
            if not -len(node) <= index < len(node):
                return MISSING
            node = node[index]
        else:
            return MISSING
    return node


def nest(parts: Iterable[str], value: Any) -> Any:
    """``value`` wrapped in one dict per key part: ``nest(["a", "b"], 1) == {"a": {"b": 1}}``."""
    for part in reversed(list(parts)):
        value = {part: value}
    return value
