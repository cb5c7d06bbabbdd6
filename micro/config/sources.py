"""The sources read once at start: defaults in code, environment variables, flags.

Names become nested keys:

- ``env("APP_")``: ``APP_DATABASE__HOST=db`` is ``database.host``; the prefix
  is dropped, ``__`` separates levels, the rest is lowercased, and a single
  ``_`` stays part of the name (``APP_MAX_CONNS`` is ``max_conns``).
- ``cli()``: ``--database.host=db`` (or ``--database.host db``) is
  ``database.host``; a bare ``--debug`` is ``"true"``; ``--`` ends the flags;
  other arguments are ignored, and so are ``--micro-*`` flags, which are the
  service's own (see :func:`micro.config.service_options`).

Values from both are strings, which typed reads and binding convert; a value
that is a JSON array or object (``'["a", "b"]'``) is parsed as one, so lists
and maps can be given too. When a name is both a value and a section
(``APP_DB=x`` and ``APP_DB__HOST=y``) the section wins.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .merge import merge, nest

__all__ = ["DefaultsSource", "EnvSource", "CliSource", "defaults", "env", "cli"]


def _value(text: str) -> Any:
    """A flag's or variable's value: parsed when it is a JSON array or object."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text


def _tree(items: Sequence[tuple[list[str], Any]]) -> dict[str, Any]:
    """Nested dicts from (key parts, value) pairs; deeper keys win over shallower ones."""
    ordered = sorted((p for p in items if p[0]), key=lambda pair: len(pair[0]))
    return merge(*(nest(parts, value) for parts, value in ordered))


class DefaultsSource:
    """Values given in code, usually the first source so everything else overrides them."""

    optional = False

    def __init__(self, values: Mapping[str, Any], *, name: str = "defaults") -> None:
        self.name = name
        self._values = merge(values)

    def read(self) -> dict[str, Any]:
        return merge(self._values)

    async def load(self) -> dict[str, Any]:
        return self.read()


class EnvSource:
    """Environment variables starting with ``prefix``, as nested keys."""

    optional = False

    def __init__(
        self,
        prefix: str,
        *,
        separator: str = "__",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.prefix = prefix
        self.separator = separator
        self.name = f"environment {prefix}*"
        self._environ = environ

    def read(self) -> dict[str, Any]:
        environ = os.environ if self._environ is None else self._environ
        return _tree(
            [
                (self.parts(name), _value(value))
                for name, value in environ.items()
                if name.startswith(self.prefix)
            ]
        )

    def parts(self, name: str) -> list[str]:
        """The key parts of a variable: ``APP_DATABASE__HOST`` → ``["database", "host"]``."""
        rest = name[len(self.prefix) :].lower()
        return [part for part in rest.split(self.separator.lower()) if part]

    async def load(self) -> dict[str, Any]:
        return self.read()


class CliSource:
    """Command-line flags starting with ``prefix`` (``--``), as dotted keys."""

    optional = False

    def __init__(
        self,
        argv: Sequence[str] | None = None,
        *,
        prefix: str = "--",
        ignore: Sequence[str] = ("--micro-",),
    ) -> None:
        self.prefix = prefix
        self.ignore = tuple(ignore)
        self.name = "command line"
        self._argv = argv

    def flags(self) -> list[tuple[str, str]]:
        """(name without the prefix, value) for each flag, in order."""
        argv = list(sys.argv[1:] if self._argv is None else self._argv)
        found: list[tuple[str, str]] = []
        i = 0
        while i < len(argv):
            arg = argv[i]
            i += 1
            if arg == "--":
                break
            if not arg.startswith(self.prefix) or arg.startswith(self.ignore):
                continue
            name, eq, value = arg[len(self.prefix) :].partition("=")
            if not name:
                continue
            if not eq:
                if i < len(argv) and not argv[i].startswith("-"):
                    value = argv[i]
                    i += 1
                else:
                    value = "true"
            found.append((name, value))
        return found

    def read(self) -> dict[str, Any]:
        return _tree([([p for p in name.split(".") if p], _value(v)) for name, v in self.flags()])

    async def load(self) -> dict[str, Any]:
        return self.read()


def defaults(values: Mapping[str, Any]) -> DefaultsSource:
    """A source of values given in code."""
    return DefaultsSource(values)


def env(
    prefix: str, *, separator: str = "__", environ: Mapping[str, str] | None = None
) -> EnvSource:
    """A source of the environment variables starting with ``prefix`` (read at load)."""
    return EnvSource(prefix, separator=separator, environ=environ)


def cli(
    argv: Sequence[str] | None = None,
    *,
    prefix: str = "--",
    ignore: Sequence[str] = ("--micro-",),
) -> CliSource:
    """A source of ``--key=value`` flags in ``argv`` (default ``sys.argv[1:]``)."""
    return CliSource(argv, prefix=prefix, ignore=ignore)
