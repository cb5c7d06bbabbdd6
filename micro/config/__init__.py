"""Dynamic config: values from defaults, files, environment, flags and etcd, hot reloaded.

::

    config = micro.Config(sources=[
        {"database": {"host": "localhost", "port": 5432}},   # defaults
        file("config.yaml", optional=True),
        env("APP_"),                    # APP_DATABASE__HOST=db → database.host
        cli(),                          # --database.host=db
        etcd("/config/app", endpoint="http://127.0.0.1:2379", optional=True),
    ])
    async with config:
        host = config.get("database.host")
        port = config.get_int("database.port")
        db = config.bind("database", Database)        # a dataclass or pydantic model
        async for flags in config.watch("feature.flags"):
            ...

Later sources override earlier ones key by key, at any depth. Files (JSON,
YAML, TOML) and etcd are watched while the config is entered; a bad edit is
logged with file and line and the last good config stays. A source can also be
named by URL (``env:APP_``, ``file:config.yaml``, ``etcd://host:port/prefix``,
or a plugin's scheme): ``Config(sources=["file:config.yaml?optional=true"])``.
A service's own options come from ``MICRO_*`` variables and ``--micro-*`` flags through
:func:`service_options`.
"""

from .base import (
    Changed,
    ConfigError,
    InvalidValue,
    MissingKey,
    Source,
    SourceInvalid,
    SourceUnavailable,
    WatchableSource,
)
from .bind import bind
from .config import Config, ConfigWatch
from .etcd_source import EtcdSource, etcd
from .file_source import FileSource, file
from .merge import MISSING, lookup, merge
from .options import SERVICE_OPTIONS, service_options
from .sources import CliSource, DefaultsSource, EnvSource, cli, defaults, env
from .urls import source
from .values import parse_duration

__all__ = [
    "MISSING",
    "SERVICE_OPTIONS",
    "Changed",
    "CliSource",
    "Config",
    "ConfigError",
    "ConfigWatch",
    "DefaultsSource",
    "EnvSource",
    "EtcdSource",
    "FileSource",
    "InvalidValue",
    "MissingKey",
    "Source",
    "SourceInvalid",
    "SourceUnavailable",
    "WatchableSource",
    "bind",
    "cli",
    "defaults",
    "env",
    "etcd",
    "file",
    "lookup",
    "merge",
    "parse_duration",
    "service_options",
    "source",
]
