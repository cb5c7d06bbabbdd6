"""Pub/sub: the Broker protocol, its message type, and its backends.

Backends are chosen by URL, in code or with ``MICRO_BROKER``:

- ``http`` (the default): no broker server; subscribers are found through the
  registry and messages delivered over HTTP/2 to their services;
- ``nats://host:port``: a NATS server, for scale (``?confirm=false`` publishes
  without waiting for the server's confirmation);
- ``memory``: in-process only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from .. import plugins
from .base import Broker, ErrorHandler, Handler, Message, PublishError, new_message_id
from .http import Caller
from .memory import MemoryBroker, default_broker

if TYPE_CHECKING:
    from ..registry.base import Registry
    from .http import BrokerInbox

#: the broker used when none is given and ``MICRO_BROKER`` is unset
DEFAULT_BROKER = plugins.KINDS["broker"].default


def resolve_broker(
    value: Broker | str | None,
    *,
    client: Caller,
    registry: Registry | None = None,
    inbox: BrokerInbox | None = None,
    address: Callable[[], str] | None = None,
) -> Broker:
    """The broker for a Service or Client: an object, a URL, or ``MICRO_BROKER`` / the default.

    A URL's scheme picks a built-in backend or an installed plugin (:mod:`micro.plugins`);
    anything else raises TypeError.
    """
    broker: Broker = plugins.resolve(
        "broker", value, client=client, registry=registry, inbox=inbox, address=address
    )
    return broker


def _memory(url: str) -> Broker:
    return default_broker()


def _http(
    url: str,
    *,
    client: Caller,
    registry: Registry | None = None,
    inbox: BrokerInbox | None = None,
    address: Callable[[], str] | None = None,
) -> Broker:
    from .http import HttpBroker, http_options

    return HttpBroker(client, registry=registry, inbox=inbox, address=address, **http_options(url))


def _nats(url: str) -> Broker:
    # Imported by name: the NATS backend is loaded only when asked for.
    nats = importlib.import_module(".nats", __name__)
    servers, options = nats.nats_options(url)
    return cast(Broker, nats.NatsBroker(servers, **options))


__all__ = [
    "DEFAULT_BROKER",
    "resolve_broker",
    "Broker",
    "Caller",
    "ErrorHandler",
    "Handler",
    "MemoryBroker",
    "Message",
    "PublishError",
    "default_broker",
    "new_message_id",
]
