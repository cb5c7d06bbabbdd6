"""micro: a Python standard library for microservices, on AnyIO (asyncio and Trio).

The public face: :class:`Service` to serve handlers, :class:`Client` to call
them, the error types, the :func:`endpoint` decorator, and the main names of
authentication and TLS (:class:`Auth`, :class:`KeySet`, :class:`Rule`, ...). Everything else is
reachable through the subpackages (``micro.registry``, ``micro.codec``, ...).
"""

from . import context
from .auth import (
    Access,
    Account,
    Auth,
    CertificateAuthority,
    KeySet,
    Resource,
    Rule,
    TLSConfig,
)
from .client.client import Client, ClientCallNext, ClientMiddleware, ClientRequest
from .client.stream import ClientStream
from .config import Config
from .errors import (
    BadRequest,
    Cancelled,
    Conflict,
    Forbidden,
    InternalServerError,
    MicroError,
    NotFound,
    PayloadTooLarge,
    Timeout,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from .server.endpoint import endpoint
from .server.server import CallNext, Middleware, Request
from .server.stream import Stream
from .service import Service
from .supervisor import PartFailed

__version__ = "0.1.0"

__all__ = [
    "Access",
    "Account",
    "Auth",
    "BadRequest",
    "CallNext",
    "Cancelled",
    "CertificateAuthority",
    "Client",
    "ClientCallNext",
    "ClientMiddleware",
    "ClientRequest",
    "ClientStream",
    "Config",
    "Conflict",
    "Forbidden",
    "InternalServerError",
    "KeySet",
    "MicroError",
    "Middleware",
    "NotFound",
    "PartFailed",
    "PayloadTooLarge",
    "Request",
    "Resource",
    "Rule",
    "Service",
    "Stream",
    "TLSConfig",
    "Timeout",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "context",
    "endpoint",
]

for _name in __all__:
    _obj = globals()[_name]
    # Dataclasses keep their home module, where their string annotations resolve.
    if (
        hasattr(_obj, "__module__")
        and not isinstance(_obj, type(context))
        and not hasattr(_obj, "__dataclass_fields__")
    ):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
