"""A service's own options from ``MICRO_*`` environment variables and ``--micro-*`` flags.

The same sources as application config, with fixed names: ``MICRO_ADDRESS``
or ``--micro-address`` is the ``address`` option, ``MICRO_REGISTER_TTL`` or
``--micro-register-ttl`` is ``register_ttl``. Flags override variables. Values
are converted with the typed reads (durations take ``30s``, sizes ``4MiB``),
and a bad one is an error naming the variable or flag it came from. Unknown
``MICRO_*`` variables are left alone (other parts read ``MICRO_*`` names too);
an unknown ``--micro-*`` flag is an error, since it can only be a typo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .base import ConfigError, InvalidValue
from .sources import CliSource, EnvSource
from .values import to_bool, to_dict, to_duration, to_int, to_size, to_str

__all__ = ["SERVICE_OPTIONS", "service_options"]

ENV_PREFIX = "MICRO_"
FLAG_PREFIX = "--micro-"

#: option name → (conversion, what it is), the table the README documents
SERVICE_OPTIONS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "address": (to_str, "host:port to listen on (`:8080` is every interface)"),
    "advertise": (to_str, "address put in the registry"),
    "version": (to_str, "registered version"),
    "metadata": (to_dict, "registered service metadata, `k=v,k2=v2` or JSON"),
    "registry": (to_str, "registry URL: `mdns`, `etcd://host:port`, `memory`"),
    "broker": (to_str, "broker URL: `http`, `nats://host:port`, `memory`"),
    "store": (to_str, "store URL: `memory`, `file:///path`, `etcd://host:port`, ..."),
    "events": (to_str, "event stream URL: `file`, `memory`, `nats://host:port`, `redis://...`"),
    "sync": (to_str, "locks and leader election URL: `memory`, `etcd://host:port`"),
    "selector": (to_str, "how the client picks a node: `random`, `roundrobin`, `leastinflight`"),
    "retries": (to_int, "times a call is retried on another node when that is safe (`2`)"),
    "attempt_timeout": (to_duration, "bound on each attempt of a call (`2s`)"),
    "register": (to_bool, "register at all (`true`/`false`)"),
    "register_ttl": (to_duration, "registration TTL (`30s`)"),
    "register_interval": (to_duration, "heartbeat interval (`10s`)"),
    "grace_period": (to_duration, "how long shutdown waits for calls in flight (`10s`)"),
    "max_message_size": (to_size, "largest message (`4MiB`)"),
    "max_concurrent_streams": (to_int, "HTTP/2 streams one client may open at once"),
    "auth_keys": (to_str, "turn auth on with the key set in this directory or PEM file"),
    "tls_cert": (to_str, "certificate (PEM) to serve TLS with and present as a client"),
    "tls_key": (to_str, "private key (PEM) of `tls_cert`"),
    "tls_ca": (to_str, "CA bundle (PEM) peers are verified with"),
    "tls_client_auth": (to_bool, "mutual TLS: require client certificates signed by `tls_ca`"),
    "tls_verify_service": (
        to_bool,
        "calls by name need the server's certificate to name the service (`true`/`false`)",
    ),
    "metrics": (to_bool, "Prometheus metrics at `/metrics` (`true`/`false`)"),
    "tracing": (to_bool, "OpenTelemetry spans, once a tracer provider is set (`true`/`false`)"),
    "request_log": (to_str, "level of the one-line log of each call (`debug`, `info`, `off`)"),
    "health_interval": (to_duration, "how often readiness checks run between probes (`10s`)"),
}


def service_options(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The service options set in the environment and on the command line, typed.

    ``argv`` defaults to ``sys.argv[1:]``, ``environ`` to ``os.environ``. Only
    options that are set appear. Raises InvalidValue for a bad value and
    ConfigError for an unknown ``--micro-*`` flag.
    """
    env = EnvSource(ENV_PREFIX, environ=environ)
    found: dict[str, tuple[str, Any]] = {}  # option → (where it came from, raw value)
    environ_items = env.read()
    for name in SERVICE_OPTIONS:
        if name in environ_items:
            found[name] = (f"{ENV_PREFIX}{name.upper()}", environ_items[name])
    flags = CliSource(argv, prefix=FLAG_PREFIX, ignore=()).flags()
    for flag, value in flags:
        name = flag.replace("-", "_")
        if name not in SERVICE_OPTIONS:
            known = ", ".join(FLAG_PREFIX + n.replace("_", "-") for n in SERVICE_OPTIONS)
            raise ConfigError(f"unknown flag {FLAG_PREFIX}{flag}; the service's flags: {known}")
        found[name] = (f"{FLAG_PREFIX}{flag}", value)
    options: dict[str, Any] = {}
    for name, (origin, value) in found.items():
        convert = SERVICE_OPTIONS[name][0]
        try:
            options[name] = convert(value)
        except ValueError as exc:
            raise InvalidValue(f"{origin} {exc}") from None
    return options
