"""Handler registration, routing, middleware and dispatch."""

from .endpoint import Endpoint, Kind, endpoint
from .server import CallNext, Middleware, Request, Server, ServerOptions

__all__ = [
    "CallNext",
    "Endpoint",
    "Kind",
    "Middleware",
    "Request",
    "Server",
    "ServerOptions",
    "endpoint",
]
