"""Backends by URL scheme: one table for every pluggable kind, built-ins and plugins alike.

Each kind — ``registry``, ``broker``, ``store``, ``sync``, ``config`` (sources),
``events``, ``codec``, ``selector`` — maps a URL scheme to a factory, which is
called with the URL (and, for built-ins that need them, the parts they work
with, such as the broker's client) and returns the backend. micro's own
backends are entries of the same table as third-party ones, each named as an
entry point is (``module:attribute``) and imported on first use.

Third-party backends are found through Python entry points: a package that
declares, in its ``pyproject.toml``::

    [project.entry-points."micro.registry"]
    consul = "micro_consul:from_url"

makes ``registry="consul://10.0.0.1:8500"`` (or ``MICRO_REGISTRY=consul://…``)
call ``micro_consul.from_url("consul://10.0.0.1:8500")``. The groups are
``micro.<kind>``; the entry point's name is the URL scheme.

This module decides which object a URL names, in one place: the ``__init__``
of each backend package asks it (:func:`resolve`), so the environment
variable, the default and the per-process cache of each kind are applied the
same way for all.
"""

from __future__ import annotations

import importlib
import inspect
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

__all__ = [
    "KINDS",
    "Kind",
    "BUILTINS",
    "KNOWN_PLUGINS",
    "UnknownScheme",
    "check",
    "create",
    "endpoint",
    "register",
    "rescan",
    "resolve",
    "scheme_of",
    "schemes",
]

Factory = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Kind:
    """One pluggable kind: its environment variable, default URL and accepted forms."""

    name: str
    #: the environment variable naming its URL when none is given in code
    env: str
    #: the URL used when neither code nor environment names one
    default: str
    #: the URLs to show in errors, e.g. ``mdns, etcd://host:port or memory``
    examples: str
    #: whether one object per URL is shared by the whole process
    shared: bool
    #: the attribute names an object passed in place of a URL must have
    methods: tuple[str, ...]


#: every pluggable kind, by name (also the entry point group's suffix)
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "registry",
            "MICRO_REGISTRY",
            "mdns",
            "mdns, etcd://host:port or memory",
            True,
            ("register", "deregister", "get_service", "watch"),
        ),
        Kind(
            "broker",
            "MICRO_BROKER",
            "http",
            "http, nats://host:port or memory",
            False,
            ("publish", "subscribe"),
        ),
        Kind(
            "store",
            "MICRO_STORE",
            "file",
            "file, file:///path, memory, etcd://host:port, redis://host:port/db, "
            "postgres://host:port/dbname or s3://bucket/prefix",
            True,
            ("read", "write", "delete"),
        ),
        Kind(
            "sync",
            "MICRO_SYNC",
            "memory",
            "memory or etcd://host:port",
            False,
            ("lock", "leader"),
        ),
        Kind(
            "config",
            "MICRO_CONFIG",
            "env:",
            "env:PREFIX, file:///path or etcd://host:port/prefix",
            False,
            ("load",),
        ),
        Kind(
            "events",
            "MICRO_EVENTS",
            "file",
            "file, file:///path, memory, nats://host:port or redis://host:port/db",
            True,
            ("publish", "consume"),
        ),
        Kind(
            "codec",
            "MICRO_CODEC",
            "json",
            "json, msgpack, proto or bytes",
            False,
            ("encode", "decode"),
        ),
        Kind(
            "selector",
            "MICRO_SELECTOR",
            "random",
            "random, roundrobin, leastinflight or hash:<metadata key>",
            False,
            ("select",),
        ),
    )
}

#: schemes micro does not provide, and what provides them (named in errors)
KNOWN_PLUGINS: dict[str, str] = {
    "consul": "a Consul plugin",
    "kubernetes": "a Kubernetes plugin",
    "k8s": "a Kubernetes plugin",
    "zookeeper": "a ZooKeeper plugin",
    "eureka": "a Eureka plugin",
    "rabbitmq": "a RabbitMQ plugin",
    "amqp": "a RabbitMQ plugin",
    "kafka": "a Kafka plugin",
    "mqtt": "an MQTT plugin",
    "gcppubsub": "a Google Cloud Pub/Sub plugin",
    "sqs": "an Amazon SQS plugin",
    "mongodb": "a MongoDB plugin",
    "dynamodb": "a DynamoDB plugin",
    "vault": "a Vault plugin",
}

_lock = threading.Lock()
#: kind -> scheme -> factory, or "module:attribute" until first used
_table: dict[str, dict[str, Factory | str]] = {kind: {} for kind in KINDS}
#: what :func:`register` added, kept over a :func:`rescan`
_registered: dict[str, dict[str, Factory | str]] = {kind: {} for kind in KINDS}
#: kinds whose entry points were read
_scanned: set[str] = set()
#: (kind, url) -> the shared backend of kinds that share one per URL
_shared: dict[tuple[str, str], Any] = {}


class UnknownScheme(ValueError):
    """No built-in backend and no installed plugin handles a URL's scheme."""


def register(kind: str, scheme: str, factory: Factory | str) -> None:
    """Make ``scheme`` URLs of ``kind`` backends come from ``factory``.

    ``factory`` is a callable taking the URL, or ``"module:attribute"`` naming
    one, imported when first used. A later registration of a scheme replaces
    the earlier one, so an application can override a built-in.
    """
    _kind(kind)
    with _lock:
        _table[kind][scheme.lower()] = _registered[kind][scheme.lower()] = factory


def schemes(kind: str) -> list[str]:
    """The schemes ``kind`` backends can be created for: built-ins and installed plugins."""
    _scan(_kind(kind).name)
    return sorted(_table[kind])


def scheme_of(url: str) -> str:
    """The scheme of a backend URL: ``etcd`` of ``etcd://h:2379``, ``file`` of
    ``file:data.db``, ``hash`` of ``hash:user``, ``mdns`` of ``mdns``."""
    head = url.partition("?")[0]
    scheme, sep, _ = head.partition("://")
    if not sep:
        scheme = head.partition(":")[0]
    return scheme.lower()


def endpoint(url: str, *, port: int, default_host: str = "127.0.0.1") -> str:
    """The HTTP(S) endpoint of an ``etcd://``, ``etcd+http://`` or ``etcd+https://``
    style URL (``https`` for a scheme ending in ``+https``), path and query dropped."""
    scheme, sep, rest = url.partition("://")
    host = rest.partition("?")[0].partition("/")[0] if sep else ""
    secure = scheme.lower().endswith("+https")
    return f"{'https' if secure else 'http'}://{host or f'{default_host}:{port}'}"


def create(kind: str, url: str, **context: Any) -> Any:
    """A new backend of ``kind`` for ``url``.

    ``context`` holds what built-ins of the kind may need (the broker's client,
    a sync's node id, store options); a plugin's factory gets the entries its
    signature names. An unknown scheme raises :class:`UnknownScheme`, naming
    the installed schemes and what would provide a well-known one.
    """
    spec = _kind(kind)
    scheme = scheme_of(url)
    factory = _factory(spec, scheme, url)
    return factory(url, **_accepted(factory, context))


def resolve(kind: str, value: Any, **context: Any) -> Any:
    """The backend for a ``kind`` parameter: an object as is, else the URL's backend.

    ``value`` is an object with the kind's methods, a URL string, or ``None``
    for the kind's environment variable or default. Kinds shared per process
    give every caller naming a URL the same object. Anything else raises
    TypeError saying what is accepted.
    """
    spec = _kind(kind)
    if value is not None and not isinstance(value, str):
        check(kind, value)
        return value
    url = value or os.environ.get(spec.env) or spec.default
    if not spec.shared:
        return create(kind, url, **context)
    with _lock:
        backend = _shared.get((kind, url))
    if backend is None:
        backend = create(kind, url, **context)
        with _lock:
            backend = _shared.setdefault((kind, url), backend)
    return backend


def check(kind: str, value: object) -> None:
    """Raise TypeError unless ``value`` can serve as a ``kind`` backend."""
    spec = _kind(kind)
    missing = [m for m in spec.methods if not callable(getattr(value, m, None))]
    if missing:
        raise TypeError(
            f"{kind} must be a {kind} object (with {', '.join(spec.methods)}) or a URL "
            f"string ({spec.examples}), not {type(value).__name__}"
        )


def _kind(kind: str) -> Kind:
    spec = KINDS.get(kind)
    if spec is None:
        raise ValueError(f"unknown kind of backend {kind!r}: use one of {', '.join(KINDS)}")
    return spec


def _scan(kind: str) -> None:
    """Add the kind's entry points (group ``micro.<kind>``) to the table, once;
    built-ins and explicit registrations keep their scheme."""
    with _lock:
        if kind in _scanned:
            return
        _scanned.add(kind)
        table = _table[kind]
        for ep in entry_points(group=f"micro.{kind}"):
            table.setdefault(ep.name.lower(), ep.value)


def rescan() -> None:
    """Read the entry points again, after a plugin was installed into (or removed from)
    a running process; built-ins and :func:`register` calls stay."""
    with _lock:
        _scanned.clear()
        for kind, table in _table.items():
            table.clear()
            table.update(BUILTINS.get(kind, {}))
            table.update(_registered[kind])


def _factory(spec: Kind, scheme: str, url: str) -> Factory:
    _scan(spec.name)
    with _lock:
        entry = _table[spec.name].get(scheme)
    if entry is None:
        installed = ", ".join(sorted(_table[spec.name]))
        hint = ""
        if scheme in KNOWN_PLUGINS:
            hint = (
                f"; {scheme!r} is provided by {KNOWN_PLUGINS[scheme]}: install the package "
                f"that declares entry point {scheme!r} in group 'micro.{spec.name}'"
            )
        raise UnknownScheme(
            f"unknown {spec.name} {url!r}: use {spec.examples} "
            f"(installed schemes: {installed}){hint}"
        )
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        target: Any = importlib.import_module(module)
        for part in attribute.split("."):
            target = getattr(target, part)
        if not callable(target):
            raise TypeError(f"{spec.name} plugin {scheme!r} ({entry}) is not callable")
        with _lock:
            _table[spec.name][scheme] = target
        entry = target
    return entry


def _accepted(factory: Factory, context: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``context`` that ``factory`` takes (all of them with ``**kwargs``)."""
    if not context:
        return context
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return context
    names = {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return {k: v for k, v in context.items() if k in names}


#: micro's own backends: kind -> scheme -> "module:attribute", as entry points name them
BUILTINS: dict[str, dict[str, str]] = {
    "registry": {
        "memory": "micro.registry:_memory",
        "mdns": "micro.registry:_mdns",
        "etcd": "micro.registry:_etcd",
        "etcd+http": "micro.registry:_etcd",
        "etcd+https": "micro.registry:_etcd",
    },
    "broker": {
        "memory": "micro.broker:_memory",
        "http": "micro.broker:_http",
        "nats": "micro.broker:_nats",
        "tls": "micro.broker:_nats",
    },
    "store": {
        "memory": "micro.store:_memory",
        "file": "micro.store:_file",
        "etcd": "micro.store:_etcd",
        "etcd+http": "micro.store:_etcd",
        "etcd+https": "micro.store:_etcd",
        "redis": "micro.store:_redis",
        "rediss": "micro.store:_redis",
        "postgres": "micro.store:_postgres",
        "postgresql": "micro.store:_postgres",
        "cockroachdb": "micro.store:_postgres",
        "cockroach": "micro.store:_postgres",
        "s3": "micro.store:_s3",
    },
    "sync": {
        "memory": "micro.sync:_memory",
        "etcd": "micro.sync:_etcd",
        "etcd+http": "micro.sync:_etcd",
        "etcd+https": "micro.sync:_etcd",
    },
    "config": {
        "etcd": "micro.config.urls:etcd_source",
        "etcd+http": "micro.config.urls:etcd_source",
        "etcd+https": "micro.config.urls:etcd_source",
        "file": "micro.config.urls:file_source",
        "env": "micro.config.urls:env_source",
    },
    "selector": {
        "random": "micro.selector.base:from_name",
        "roundrobin": "micro.selector.base:from_name",
        "round_robin": "micro.selector.base:from_name",
        "leastinflight": "micro.selector.base:from_name",
        "least_inflight": "micro.selector.base:from_name",
        "p2c": "micro.selector.base:from_name",
        "hash": "micro.selector.base:from_name",
    },
    "codec": {name: "micro.codec:get" for name in ("json", "msgpack", "proto", "bytes")},
    "events": {
        "memory": "micro.events:_memory",
        "file": "micro.events:_file",
        "redis": "micro.events:_redis",
        "rediss": "micro.events:_redis",
        "nats": "micro.events:_nats",
        "tls": "micro.events:_nats",
    },
}

rescan()
