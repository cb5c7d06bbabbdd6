"""The HTTP API gateway and web dashboard, and services as ASGI apps.

:class:`Gateway` routes ``POST /{service}/{Endpoint}`` JSON calls to services
found in the registry and serves the dashboard at ``/`` (live call charts read
from the nodes' ``/metrics``, see :mod:`.metrics`; its JSON API and sign-in in
:mod:`.api`); :func:`serve_gateway` runs it with hypercorn
(``micro gateway --address :8080``).
``service.asgi()`` gives one service's endpoints as a :class:`ServiceApp`.
The gateway's ``/mcp`` offers the services as tools for AI agents
(:mod:`micro.gateway.mcp`, chosen by :class:`McpOptions`).
"""

from .app import Gateway
from .asgi import ASGIApp
from .server import bind, open_gateway, serve_asgi, serve_gateway
from .service_app import ServiceApp
from .tools import McpOptions

__all__ = [
    "ASGIApp",
    "Gateway",
    "McpOptions",
    "ServiceApp",
    "bind",
    "open_gateway",
    "serve_asgi",
    "serve_gateway",
]
