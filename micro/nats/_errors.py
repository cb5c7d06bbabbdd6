"""The NATS client's errors: all are MicroErrors with their HTTP and gRPC codes."""

from __future__ import annotations

from ..errors import Unavailable
from ..message import PublishError

__all__ = ["NatsUnavailable", "NoResponders", "Unconfirmed"]


class NatsUnavailable(Unavailable):
    """No NATS server could be reached, or the connection broke."""


class Unconfirmed(PublishError):
    """The server did not confirm a publish: the connection broke or it stopped answering.

    The server may or may not have the message; publishing it again may
    deliver it twice.
    """


class NoResponders(NatsUnavailable):
    """A request found nobody subscribed to its subject."""
