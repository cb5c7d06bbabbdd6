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
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from .base import Broker, ErrorHandler, Handler, Message, PublishError, new_message_id
from .memory import MemoryBroker, default_broker

if TYPE_CHECKING:
    from ..client.client import Client
    from ..registry.base import Registry
    from .http import BrokerInbox

#: the broker used when none is given and ``MICRO_BROKER`` is unset
DEFAULT_BROKER = "http"


def resolve_broker(
    value: Broker | str | None,
    *,
    client: Client,
    registry: Registry | None = None,
    inbox: BrokerInbox | None = None,
    address: Callable[[], str] | None = None,
) -> Broker:
    """The broker for a Service or Client: an object, a URL, or the default."""
    if value is not None and not isinstance(value, str):
        return value
    url = value or os.environ.get("MICRO_BROKER") or DEFAULT_BROKER
    scheme = url.partition("://")[0].partition("?")[0].lower()
    if scheme == "memory":
        return default_broker()
    if scheme == "http":
        from .http import HttpBroker, http_options

        return HttpBroker(
            client, registry=registry, inbox=inbox, address=address, **http_options(url)
        )
    if scheme in ("nats", "tls"):
        # Imported by name: the NATS backend is loaded only when asked for.
        nats = importlib.import_module(".nats", __name__)
        servers, options = nats.nats_options(url)
        return cast(Broker, nats.NatsBroker(servers, **options))
    raise ValueError(f"unknown broker {url!r}: use http, nats://host:port or memory")


__all__ = [
    "DEFAULT_BROKER",
    "resolve_broker",
    "Broker",
    "ErrorHandler",
    "Handler",
    "MemoryBroker",
    "Message",
    "PublishError",
    "default_broker",
    "new_message_id",
]
