"""NATS: the client protocol, sans-IO (:mod:`micro.nats.protocol`), and an anyio client.

``async with NatsClient("nats://127.0.0.1:4222") as nc:``, then ``publish``,
``subscribe``, ``request`` and ``flush``. It speaks the NATS client protocol
itself over anyio streams, so it runs under asyncio and Trio alike. The
broker backend built on it is :class:`micro.broker.nats.NatsBroker`.
"""

from ._client import DEFAULT_URL, NatsClient
from ._connection import ServerAddress, parse_servers
from ._errors import NatsUnavailable, NoResponders, Unconfirmed
from ._subscription import Subscription
from .protocol import Msg, ProtocolError

__all__ = [
    "DEFAULT_URL",
    "Msg",
    "NatsClient",
    "NatsUnavailable",
    "NoResponders",
    "ProtocolError",
    "ServerAddress",
    "Subscription",
    "Unconfirmed",
    "parse_servers",
]
