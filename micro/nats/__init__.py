"""NATS: the client protocol, sans-IO (:mod:`micro.nats.protocol`), and an anyio client.

``async with NatsClient("nats://127.0.0.1:4222") as nc:``, then ``publish``,
``subscribe``, ``request`` and ``flush``. It speaks the NATS client protocol
itself over anyio streams, so it runs under asyncio and Trio alike.
:func:`shared_client` gives the process's one client per server, which the
broker and the event stream use unless given one. The
broker backend built on it is :class:`micro.broker.nats.NatsBroker`;
:class:`JetStream` (streams, stored publishes, pull consumers) is the event
stream backend's, :class:`micro.events.JetStreamEventStream`.
"""

from ._client import DEFAULT_URL, NatsClient, shared_client, shared_clients
from ._connection import RoundTrip, ServerAddress, parse_servers
from ._errors import NatsUnavailable, NoResponders, Unconfirmed
from ._subscription import Subscription
from .jetstream import JetStream, JetStreamError, PubAck
from .protocol import Msg, ProtocolError

__all__ = [
    "DEFAULT_URL",
    "JetStream",
    "JetStreamError",
    "Msg",
    "NatsClient",
    "NatsUnavailable",
    "NoResponders",
    "ProtocolError",
    "PubAck",
    "RoundTrip",
    "ServerAddress",
    "Subscription",
    "Unconfirmed",
    "parse_servers",
    "shared_client",
    "shared_clients",
]
