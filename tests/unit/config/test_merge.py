"""Merging config layers and looking up dotted keys: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from micro.config import MISSING, lookup, merge
from micro.config.merge import nest, split_key


def test_later_layers_override_key_by_key_at_any_depth() -> None:
    defaults = {"db": {"host": "localhost", "port": 5432, "pool": {"min": 1, "max": 10}}, "a": 1}
    file = {"db": {"host": "db1", "pool": {"max": 50}}}
    env = {"db": {"pool": {"min": 5}}, "b": 2}
    assert merge(defaults, file, env) == {
        "db": {"host": "db1", "port": 5432, "pool": {"min": 5, "max": 50}},
        "a": 1,
        "b": 2,
    }


def test_a_scalar_replaces_a_section_and_a_section_replaces_a_scalar() -> None:
    assert merge({"db": {"host": "x"}}, {"db": "sqlite://"}) == {"db": "sqlite://"}
    assert merge({"db": "sqlite://"}, {"db": {"host": "x"}}) == {"db": {"host": "x"}}


def test_lists_are_replaced_whole() -> None:
    assert merge({"hosts": ["a", "b", "c"]}, {"hosts": ["d"]}) == {"hosts": ["d"]}


def test_null_is_a_value_that_overrides() -> None:
    assert merge({"proxy": "http://p"}, {"proxy": None}) == {"proxy": None}


def test_no_layers_and_empty_layers() -> None:
    assert merge() == {}
    assert merge({}, {"a": 1}, {}) == {"a": 1}


def test_merge_shares_nothing_with_its_inputs() -> None:
    first: dict[str, Any] = {"db": {"hosts": ["a"]}}
    second: dict[str, Any] = {"db": {"port": 1}, "extra": {"k": [1]}}
    merged = merge(first, second)
    merged["db"]["hosts"].append("b")
    merged["extra"]["k"].append(2)
    merged["db"]["port"] = 2
    assert first == {"db": {"hosts": ["a"]}}
    assert second == {"db": {"port": 1}, "extra": {"k": [1]}}


def test_merge_is_associative_on_dicts() -> None:
    a = {"x": {"y": 1, "z": [1]}, "w": 0}
    b = {"x": {"y": 2}, "v": {"u": 1}}
    c = {"x": {"z": [2], "q": None}, "v": 3}
    assert merge(merge(a, b), c) == merge(a, merge(b, c)) == merge(a, b, c)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("", {"db": {"host": "h", "servers": [{"name": "s0"}, {"name": "s1"}]}, "n": None}),
        ("db.host", "h"),
        ("db.servers.1.name", "s1"),
        ("db.servers.-1.name", "s1"),
        ("n", None),
        ("db.port", MISSING),
        ("db.host.more", MISSING),
        ("db.servers.2", MISSING),
        ("db.servers.x", MISSING),
        ("nothing.at.all", MISSING),
    ],
)
def test_lookup(key: str, expected: Any) -> None:
    data = {"db": {"host": "h", "servers": [{"name": "s0"}, {"name": "s1"}]}, "n": None}
    assert lookup(data, key) == expected


def test_missing_is_distinct_from_none_and_falsy() -> None:
    assert MISSING is not None
    assert not MISSING
    assert repr(MISSING) == "MISSING"


def test_split_key_and_nest() -> None:
    assert split_key("a.b.c") == ["a", "b", "c"]
    assert split_key("") == []
    assert split_key("a..b.") == ["a", "b"]
    assert nest(["a", "b"], 1) == {"a": {"b": 1}}
    assert nest([], {"x": 1}) == {"x": 1}
