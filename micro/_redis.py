"""What the Redis store and the Redis event stream share: their URL, their
client and the errors they raise for it.

``redis://[user:password@]host:port/db`` (``rediss://`` for TLS) names a
server and a numbered database; a failure of the server becomes the part's own
:class:`~micro.errors.Unavailable` (StoreUnavailable, EventsUnavailable) naming
the address.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import coredis
import coredis.exceptions

from .errors import Unavailable

__all__ = ["RedisServer", "close", "errors", "escape"]


@dataclass(frozen=True, slots=True)
class RedisServer:
    """Where a ``redis://`` URL points, and how to log in."""

    host: str
    port: int
    db: int
    username: str | None = None
    password: str | None = None
    ssl: bool = False

    @classmethod
    def from_url(cls, url: str) -> RedisServer:
        """The server of ``redis://host:port/db``; raises ValueError for another URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a redis URL: {url!r} (use redis://host:port/db)")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the database in {url!r} must be a number, as in redis://host:port/0")
        return cls(
            parts.hostname or "127.0.0.1",
            parts.port or 6379,
            int(path or 0),
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            parts.scheme == "rediss",
        )

    @property
    def address(self) -> str:
        """``host:port/db``, for messages."""
        return f"{self.host}:{self.port}/{self.db}"

    def client(
        self, *, connect_timeout: float, stream_timeout: float | None = None
    ) -> coredis.Redis[bytes]:
        """A new, unopened client of bytes; ``stream_timeout`` bounds each answer
        (None: a blocking command may wait as long as it asks)."""
        return coredis.Redis(
            self.host,
            self.port,
            self.db,
            username=self.username,
            password=self.password,
            ssl=self.ssl,
            connect_timeout=connect_timeout,
            stream_timeout=stream_timeout,
            decode_responses=False,
        )

    async def open(
        self,
        unavailable: type[Unavailable],
        scripts: Mapping[str, str],
        *,
        connect_timeout: float,
        stream_timeout: float | None = None,
    ) -> tuple[coredis.Redis[bytes], dict[str, Any]]:
        """A connected client and its Lua ``scripts`` registered by name; raises
        ``unavailable`` when the server cannot be reached. Close it with :func:`close`
        in the same task."""
        client = self.client(connect_timeout=connect_timeout, stream_timeout=stream_timeout)
        with errors(self.address, unavailable):
            await client.__aenter__()
        return client, {name: client.register_script(lua) for name, lua in scripts.items()}


async def close(client: coredis.Redis[bytes]) -> None:
    """Close a client from :meth:`RedisServer.open`; a server already gone is no error.

    Not shielded: coredis's task group, entered on opening, must exit in the
    scope it was entered in.
    """
    with contextlib.suppress(coredis.exceptions.RedisError):
        await client.__aexit__(None, None, None)


@contextlib.contextmanager
def errors(address: str, unavailable: type[Unavailable]) -> Iterator[None]:
    """Turn a failure of the server at ``address`` into ``unavailable``."""
    try:
        yield
    except coredis.exceptions.ConnectionError as exc:
        raise unavailable(f"redis at {address} is unreachable ({exc})") from exc
    except coredis.exceptions.RedisError as exc:
        raise unavailable(f"redis at {address} failed: {exc}") from exc
    except OSError as exc:  # TimeoutError included
        raise unavailable(f"redis at {address} is unreachable ({exc})") from exc


def escape(name: str) -> str:
    """``name`` with "%" and ":" as %25 and %3A, so it is one part of a ``:``-joined key."""
    return name.replace("%", "%25").replace(":", "%3A")
