"""What the Redis store and the Redis event stream share: their URL, their
client and the errors they raise for it.

``redis://[user:password@]host:port/db`` (``rediss://`` for TLS) names a
server and a numbered database; a failure of the server becomes the part's own
:class:`~micro.errors.Unavailable` (StoreUnavailable, EventsUnavailable) naming
the address.

:func:`shared_client` gives the process's one client per server and database,
which a service's store and event stream on the same Redis share: one
connection for their commands (a consumer's blocking read takes one of its
own), opened by the first user and closed after the last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import anyio
import coredis
import coredis.exceptions

from .errors import Unavailable
from .refcount import Users

__all__ = [
    "RedisServer",
    "SharedRedis",
    "close",
    "errors",
    "escape",
    "shared_client",
    "shared_clients",
]


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


class SharedRedis:
    """One client of a server that several parts use: the first user connects it, the
    last closes it. It has no answer timeout (a blocking read waits as long as it
    asks); each part bounds its own calls.

    The first user's task hosts coredis's task group, so the parts sharing it are
    opened and closed in one task, last in first out, as a service does.
    """

    def __init__(self, server: RedisServer, *, connect_timeout: float) -> None:
        self.server = server
        self.connect_timeout = connect_timeout
        #: the parts holding the client open
        self.users = Users()
        self.client: coredis.Redis[bytes] | None = None

    async def open(
        self, unavailable: type[Unavailable], scripts: Mapping[str, str]
    ) -> tuple[coredis.Redis[bytes], dict[str, Any]]:
        """Count a user in (the first connects, raising ``unavailable`` when the server
        cannot be reached); the client and the user's Lua ``scripts`` by name."""

        async def connect() -> None:
            client, _ = await self.server.open(
                unavailable, {}, connect_timeout=self.connect_timeout
            )
            # One connection made now, before the parts' first calls race to make one
            # each; later commands share it. Best effort: a server that is down now is
            # each call's error, as without sharing.
            with (
                contextlib.suppress(coredis.exceptions.RedisError, OSError),
                anyio.move_on_after(self.connect_timeout),
            ):
                await client.ping()
            self.client = client

        await self.users.enter(connect)
        client = self.client
        if client is None:  # its last user closed it meanwhile
            await self.users.exit()
            raise unavailable(f"the client of redis at {self.server.address} was closed")
        return client, {name: client.register_script(lua) for name, lua in scripts.items()}

    async def close(self) -> None:
        """Count a user out; the last one closes the client."""

        async def disconnect() -> None:
            client, self.client = self.client, None
            if client is not None:
                await close(client)

        await self.users.exit(disconnect)


_shared: dict[tuple[RedisServer, float], SharedRedis] = {}


def shared_client(server: RedisServer, *, connect_timeout: float) -> SharedRedis:
    """The process's one :class:`SharedRedis` for ``server`` (its database and login
    included) and ``connect_timeout``."""
    key = (server, connect_timeout)
    shared = _shared.get(key)
    if shared is None:
        shared = _shared[key] = SharedRedis(server, connect_timeout=connect_timeout)
    return shared


def shared_clients() -> dict[tuple[RedisServer, float], SharedRedis]:
    """The shared clients by server and connect timeout (a copy), to see which are open."""
    return dict(_shared)
