"""A service's options, merged in one place: arguments, then ``--micro-*`` flags, then
``MICRO_*`` variables, then the defaults.

:class:`ServiceOptions` has one field per option, with its default; :func:`build_options`
makes one from the arguments given in code and the process's (or a given) command line
and environment. :class:`micro.Service` composes its parts from the result. The table of
what may be set from the environment and the command line, and how each value is read,
is :data:`micro.config.SERVICE_OPTIONS`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .auth.auth import Auth
from .auth.keys import KeySet
from .config.options import service_options
from .observability import TelemetryOptions
from .server.server import DEFAULT_MAX_MESSAGE_SIZE
from .tls import TLSConfig

if TYPE_CHECKING:
    from .broker.base import Broker
    from .client.client import ClientMiddleware
    from .config import Config
    from .events import EventStream
    from .registry.base import Registry
    from .selector.base import Selector
    from .server.server import Middleware
    from .store import Store
    from .sync.base import Sync

__all__ = [
    "OPTION_NAMES",
    "ServiceOptions",
    "build_options",
    "log_level",
    "security",
    "telemetry_options",
]


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """Every option of a service, with its default (the README's "Service options" table)."""

    #: registered version
    version: str = "latest"
    #: ``host:port`` to listen on; ``:8080`` is every interface
    address: str = ":0"
    #: address put in the registry (None: the bound address)
    advertise: str | None = None
    #: registered service metadata
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: where the service registers: an object or a URL (None: ``MICRO_REGISTRY`` or ``mdns``)
    registry: Registry | str | None = None
    #: where it publishes and subscribes (None: ``http``)
    broker: Broker | str | None = None
    #: its key-value store (None: ``file``)
    store: Store | str | None = None
    #: its durable event streams (None: ``file``, opened only once used)
    events: EventStream | str | None = None
    #: locks and leader election (None: ``memory``)
    sync: Sync | str | None = None
    #: how the service's client picks a node (None: ``random``)
    selector: Selector | str | None = None
    #: times a call is retried on another node when that is safe
    retries: int = 2
    #: bound on each attempt of a call (None: only the call's deadline)
    attempt_timeout: float | None = None
    #: register at all
    register: bool = True
    #: registration TTL, seconds
    register_ttl: float = 30.0
    #: heartbeat interval, seconds
    register_interval: float = 10.0
    #: how long shutdown waits for calls in flight, seconds
    grace_period: float = 10.0
    #: largest request or response message, bytes
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: HTTP/2 streams one client may open at once
    max_concurrent_streams: int = 1000
    #: server middleware, the first outermost
    middleware: Sequence[Middleware] = ()
    #: client middleware, the first outermost
    client_middleware: Sequence[ClientMiddleware] = ()
    #: config loaded at start and watched while running
    config: Config | None = None
    #: authentication and authorization (None: off; ``MICRO_AUTH_KEYS`` turns it on)
    auth: Auth | None = None
    #: TLS for the listener and the client (None: h2c; ``MICRO_TLS_*`` turn it on)
    tls: TLSConfig | None = None
    #: Prometheus metrics at ``GET /metrics``
    metrics: bool = True
    #: OpenTelemetry spans once a tracer provider is set, or a TracerProvider to use
    tracing: bool | Any = True
    #: level of the one-line log of each call (``off`` for none)
    request_log: str | int = "debug"
    #: how often readiness checks run between probes, seconds
    health_interval: float = 10.0
    #: turn auth on with the key set in this directory or PEM file (unless ``auth`` is given)
    auth_keys: str | None = None
    #: certificate (PEM) to serve TLS with and present as a client (unless ``tls`` is given)
    tls_cert: str | None = None
    #: private key (PEM) of ``tls_cert``
    tls_key: str | None = None
    #: CA bundle (PEM) peers are verified with
    tls_ca: str | None = None
    #: mutual TLS: require client certificates signed by ``tls_ca``
    tls_client_auth: bool = False
    #: calls by name need the server's certificate to name the service
    tls_verify_service: bool = True
    #: the options whose value came from ``--micro-*`` or ``MICRO_*``, not from code
    from_environment: frozenset[str] = frozenset()


#: the names of the options, the fields of ServiceOptions
OPTION_NAMES = frozenset(f.name for f in fields(ServiceOptions)) - {"from_environment"}
_FIELDS = OPTION_NAMES


def build_options(
    given: Mapping[str, Any],
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceOptions:
    """The options of a service: each one given in code (not None) as is, else from
    ``argv``'s ``--micro-*`` flags, else from ``environ``'s ``MICRO_*`` variables (the
    process's own when None), else its default. Raises ConfigError for an unknown flag or
    a bad value; TypeError for an argument that is no option."""
    unknown = set(given) - _FIELDS
    if unknown:
        raise TypeError(f"unknown service option(s): {', '.join(sorted(unknown))}")
    read = service_options(argv, environ)
    values: dict[str, Any] = {}
    from_environment: set[str] = set()
    for name in _FIELDS:
        value = given.get(name)
        if value is not None:
            values[name] = value
        elif name in read:
            values[name] = read[name]
            from_environment.add(name)
    return ServiceOptions(**values, from_environment=frozenset(from_environment))


def security(options: ServiceOptions) -> tuple[Auth | None, TLSConfig | None]:
    """The service's auth and TLS: as given, else made from ``auth_keys`` and ``tls_*``
    (loading the key set and checking the files), else off."""
    auth = options.auth
    if auth is None and options.auth_keys is not None:
        auth = Auth(KeySet.load(options.auth_keys))
    tls = options.tls
    if tls is None and (options.tls_cert is not None or options.tls_ca is not None):
        tls = TLSConfig(
            cert=options.tls_cert,
            key=options.tls_key,
            ca=options.tls_ca,
            client_auth=options.tls_client_auth,
            verify_service=options.tls_verify_service,
        )
    return auth, tls


def telemetry_options(options: ServiceOptions) -> TelemetryOptions:
    """What the service's telemetry records: metrics, spans (with the tracer provider
    given, if one is) and the level of the request log. Raises ValueError for an
    unknown log level."""
    tracing = options.tracing
    provider = None if isinstance(tracing, bool) else tracing
    return TelemetryOptions(
        metrics=options.metrics,
        tracing=provider is not None or tracing,
        tracer_provider=provider,
        request_log_level=log_level(options.request_log),
    )


def log_level(value: str | int | None) -> int | None:
    """A logging level from a name (``debug``, ``INFO``, ``off``) or number (None: off)."""
    if value is None or isinstance(value, int):
        return value
    if value.lower() in ("off", "none", "false", ""):
        return None
    level = logging.getLevelName(value.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {value!r}")
    return level
