"""The Redis URL, client options and error mapping the Redis store and event stream share."""

from __future__ import annotations

import coredis.exceptions
import pytest

from micro._redis import RedisServer, errors, escape
from micro.events import EventsUnavailable
from micro.store import StoreUnavailable


def test_urls() -> None:
    server = RedisServer.from_url("rediss://user:p%40ss@cache.example:6380/3")
    assert server == RedisServer("cache.example", 6380, 3, "user", "p@ss", ssl=True)
    assert server.address == "cache.example:6380/3"
    assert RedisServer.from_url("redis://h").address == "h:6379/0"
    with pytest.raises(ValueError, match="must be a number"):
        RedisServer.from_url("redis://h:1/x")
    with pytest.raises(ValueError, match="not a redis URL"):
        RedisServer.from_url("http://h:1")


@pytest.mark.parametrize(
    ("failure", "unavailable", "message"),
    [
        (
            coredis.exceptions.ConnectionError("refused"),
            StoreUnavailable,
            "is unreachable (refused)",
        ),
        (coredis.exceptions.ResponseError("WRONGTYPE"), EventsUnavailable, "failed: WRONGTYPE"),
        (TimeoutError("timed out"), StoreUnavailable, "is unreachable (timed out)"),
    ],
)
def test_failures_become_the_parts_own_error(
    failure: Exception, unavailable: type[Exception], message: str
) -> None:
    with pytest.raises(unavailable) as caught, errors("h:1/0", unavailable):  # type: ignore[arg-type]
        raise failure
    assert str(caught.value.detail) == f"redis at h:1/0 {message}"  # type: ignore[attr-defined]


def test_no_failure_passes_through() -> None:
    with errors("h:1/0", StoreUnavailable):
        pass


def test_escaped_names_are_one_part_of_a_key() -> None:
    assert escape("a:b%c") == "a%3Ab%25c"
    assert escape("plain") == "plain"
