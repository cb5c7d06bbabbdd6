"""Config sources by URL, chosen like every backend (:mod:`micro.plugins`, kind ``config``).

- ``etcd://host:port/config/app`` (``etcd+https://`` for TLS): the keys under
  ``/config/app`` in etcd, watched;
- ``file:///etc/app/config.yaml`` or ``file:config.yaml`` (relative): a JSON,
  YAML or TOML file, watched;
- ``env:APP_``: the environment variables starting with ``APP_``.

``?optional=true`` starts without the source when it is not there yet (etcd
unreachable, file missing). A plugin adds a scheme with an entry point in
group ``micro.config``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

from .. import plugins
from .base import Source
from .values import to_bool

__all__ = ["source"]


def source(url: str) -> Source:
    """The config source a URL names (``etcd://…/prefix``, ``file:…``, ``env:PREFIX``, or a
    plugin's scheme)."""
    made: Any = plugins.create("config", url)
    plugins.check("config", made)
    result: Source = made
    return result


def _optional(url: str) -> bool:
    for key, value in parse_qsl(url.partition("?")[2], keep_blank_values=True):
        if key != "optional":
            raise ValueError(f"unknown config source option {key!r} in {url!r}: use optional")
        return to_bool(value)
    return False


def etcd_source(url: str) -> Source:
    from .etcd_source import etcd

    _, _, rest = url.partition("?")[0].partition("://")
    prefix = "/" + rest.partition("/")[2] if "/" in rest else "/"
    return etcd(unquote(prefix), endpoint=plugins.endpoint(url, port=2379), optional=_optional(url))


def file_source(url: str) -> Source:
    from .file_source import file

    head = url.partition("?")[0]
    _, sep, path = head.partition("://")
    if not sep:
        path = head.partition(":")[2]
    if not path:
        raise ValueError(f"config source {url!r} names no file: use file:///path or file:path")
    return file(unquote(path), optional=_optional(url))


def env_source(url: str) -> Source:
    from .sources import env

    head = url.partition("?")[0]
    _, sep, prefix = head.partition("://")
    if not sep:
        prefix = head.partition(":")[2]
    return env(prefix)
