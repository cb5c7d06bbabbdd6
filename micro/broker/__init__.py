"""Pub/sub: the Broker protocol, its message type, and its backends."""

from .base import Broker, ErrorHandler, Handler, Message, PublishError, new_message_id
from .memory import MemoryBroker, default_broker

__all__ = [
    "Broker",
    "ErrorHandler",
    "Handler",
    "MemoryBroker",
    "Message",
    "PublishError",
    "default_broker",
    "new_message_id",
]
