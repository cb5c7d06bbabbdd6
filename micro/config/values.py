"""Typed reads: turning a config value into an int, a bool, a duration, a list, ...

Config values arrive typed from JSON, YAML, TOML and etcd, but as strings from
environment variables and command-line flags, so every conversion accepts both:
``8080`` and ``"8080"`` are the same int, ``true`` and ``"yes"`` the same bool.
Each function raises ``ValueError`` with a message that fits after the key's
name ("is not an int"); :class:`~micro.config.Config` adds the key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

__all__ = [
    "to_str",
    "to_int",
    "to_float",
    "to_bool",
    "to_duration",
    "to_size",
    "to_list",
    "to_dict",
    "parse_duration",
]

_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})

# Go's time.ParseDuration units, so "1h30m" and "250ms" read the same as in Go Micro.
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # the micro sign, as Go writes it
    "\u03bcs": 1e-6,  # the Greek mu, which people type for it
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = re.compile(
    r"(\d+(?:\.\d*)?|\.\d+)(" + "|".join(sorted(_DURATION_UNITS, key=len, reverse=True)) + ")"
)

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_SIZE = re.compile(r"(\d+(?:\.\d*)?)\s*([a-z]*)")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_str(value: Any) -> str:
    """A string; numbers and bools are written as in JSON (``true``, ``8080``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"is {_show(value)}, not a string")


def to_int(value: Any) -> int:
    """An int, from an int, an integral float or a decimal string (``"8_080"`` too)."""
    if isinstance(value, bool):
        raise ValueError(f"is {_show(value)}, not an int")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"is {_show(value)}, not an int")


def to_float(value: Any) -> float:
    """A float, from a number or a numeric string."""
    if isinstance(value, bool):
        raise ValueError(f"is {_show(value)}, not a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"is {_show(value)}, not a number")


def to_bool(value: Any) -> bool:
    """A bool, from a bool, 0 or 1, or true/false, yes/no, on/off (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise ValueError(f"is {_show(value)}, not a bool (use true or false)")


def parse_duration(text: str) -> float:
    """Seconds in ``"1.5s"``, ``"250ms"``, ``"2m"``, ``"1h30m"`` or ``"30"`` (seconds).

    Units are Go's (ns, us, ms, s, m, h) plus d for days; raises ``ValueError``.
    """
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    if body[:1] in ("+", "-"):
        body = body[1:]
    try:
        seconds = float(body)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and (body[:1].isdigit() or body[:1] == "."):
            return sign * seconds
        raise ValueError(f"is {_show(text)}, not a duration")
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body) or pos == 0:
        raise ValueError(
            f"is {_show(text)}, not a duration (use e.g. 1.5s, 250ms, 2m, 1h or seconds)"
        )
    return sign * total


def to_duration(value: Any) -> float:
    """Seconds, from a number of seconds, a ``timedelta`` or a duration string."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"is {_show(value)}, not a duration")


def to_size(value: Any) -> int:
    """Bytes, from an int or a string such as ``"4MiB"``, ``"512 KiB"`` or ``"1GB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip().lower())
        if match and match.group(2) in _SIZE_UNITS:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    raise ValueError(f"is {_show(value)}, not a size (use bytes or e.g. 512KiB, 4MiB)")


def to_list(value: Any) -> list[Any]:
    """A list, from a list, a JSON array string, or a comma-separated string."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                pass
            else:
                if isinstance(parsed, list):
                    return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    raise ValueError(f"is {_show(value)}, not a list")


def to_dict(value: Any) -> dict[str, Any]:
    """A dict, from a mapping, a JSON object string, or ``"k=v,k2=v2"``."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError:
                pass
            else:
                if isinstance(parsed, dict):
                    return parsed
        pairs = [part for part in text.split(",") if part.strip()]
        if all("=" in part for part in pairs):
            return {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in pairs)}
    raise ValueError(f"is {_show(value)}, not a mapping (use JSON or k=v,k2=v2)")
