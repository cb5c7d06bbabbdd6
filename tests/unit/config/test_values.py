"""Typed reads: conversions of config values, from typed documents and from strings."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from micro.config import parse_duration
from micro.config.values import (
    to_bool,
    to_dict,
    to_duration,
    to_float,
    to_int,
    to_list,
    to_size,
    to_str,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5s", 1.5),
        ("250ms", 0.25),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m0.5s", 60.5),
        ("30", 30.0),
        ("0.1", 0.1),
        (" 10s ", 10.0),
        ("500us", 0.0005),
        ("500\u00b5s", 0.0005),
        ("100ns", 1e-7),
        ("1d", 86400.0),
        ("-1.5s", -1.5),
        (".5s", 0.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert to_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1.5 s", "ms5", "1h 30m", "abc", "1s2", "--1s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_durations_from_numbers_and_timedeltas() -> None:
    assert to_duration(3) == 3.0
    assert to_duration(0.25) == 0.25
    assert to_duration(timedelta(minutes=1, milliseconds=500)) == 60.5
    with pytest.raises(ValueError, match="not a duration"):
        to_duration(True)
    with pytest.raises(ValueError, match="not a duration"):
        to_duration([1])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("off", False),
        ("0", False),
        (" true ", True),
    ],
)
def test_bools(value: Any, expected: bool) -> None:
    assert to_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, 1.0, None, [True]])
def test_bad_bools(value: Any) -> None:
    with pytest.raises(ValueError, match="not a bool"):
        to_bool(value)


def test_ints() -> None:
    assert to_int(8080) == 8080
    assert to_int("8080") == 8080
    assert to_int(" -3 ") == -3
    assert to_int("1_000") == 1000
    assert to_int(3.0) == 3
    for bad in ("3.5", 3.5, True, "x", None, [1]):
        with pytest.raises(ValueError, match="not an int"):
            to_int(bad)


def test_floats() -> None:
    assert to_float(1) == 1.0
    assert to_float("0.5") == 0.5
    assert to_float("1e3") == 1000.0
    for bad in ("x", True, None, {}):
        with pytest.raises(ValueError, match="not a number"):
            to_float(bad)


def test_strs() -> None:
    assert to_str("x") == "x"
    assert to_str(8080) == "8080"
    assert to_str(0.5) == "0.5"
    assert to_str(True) == "true"
    for bad in (None, [1], {"a": 1}):
        with pytest.raises(ValueError, match="not a string"):
            to_str(bad)


def test_sizes() -> None:
    assert to_size(1024) == 1024
    assert to_size("1024") == 1024
    assert to_size("4MiB") == 4 * 1024 * 1024
    assert to_size("512 KiB") == 512 * 1024
    assert to_size("1GB") == 10**9
    assert to_size("1.5k") == 1500
    for bad in ("4 parsecs", "MiB", True, -1.5):
        with pytest.raises(ValueError, match="not a size"):
            to_size(bad)


def test_lists() -> None:
    assert to_list(["a", 1]) == ["a", 1]
    assert to_list(("a",)) == ["a"]
    assert to_list("a, b,,c") == ["a", "b", "c"]
    assert to_list('["a", 1]') == ["a", 1]
    assert to_list("") == []
    assert to_list("[not json") == ["[not json"]
    for bad in (1, None, {"a": 1}):
        with pytest.raises(ValueError, match="not a list"):
            to_list(bad)


def test_dicts() -> None:
    assert to_dict({"a": 1}) == {"a": 1}
    assert to_dict('{"a": 1}') == {"a": 1}
    assert to_dict("zone=eu, tier = gold") == {"zone": "eu", "tier": "gold"}
    assert to_dict("") == {}
    for bad in ("just text", 1, ["a"], None):
        with pytest.raises(ValueError, match="not a mapping"):
            to_dict(bad)


def test_long_values_are_shortened_in_messages() -> None:
    with pytest.raises(ValueError) as info:
        to_int("x" * 500)
    assert len(str(info.value)) < 100
