"""Parsing config documents: JSON, YAML and TOML, with errors that name file and line.

Every parser gives a dict (a document whose top level is not a mapping is an
error) or raises :class:`~micro.config.SourceInvalid` with a detail of the form
``config.yaml:3:7: <what the parser said>``, so the place to fix is one click
away in an editor or a log viewer. An empty document (nothing but whitespace)
is an empty config.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from .base import SourceInvalid

__all__ = ["FORMATS", "format_for", "parse"]

#: file name suffix → format name
FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}

_TOML_PLACE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def format_for(path: str | PurePath) -> str:
    """The format of a file by its suffix; raises ValueError for an unknown one."""
    suffix = PurePath(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise ValueError(
            f"cannot tell the format of {path} from its suffix ({known}); pass format="
        ) from None


def parse(data: bytes, format: str, origin: str) -> dict[str, Any]:
    """The document in ``data`` as a dict; ``origin`` (a file name) prefixes errors."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceInvalid(f"{origin}: not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        return {}
    try:
        parser = _PARSERS[format]
    except KeyError:
        raise ValueError(f"unknown config format {format!r}; use json, yaml or toml") from None
    value = parser(text, origin)
    if value is None:  # a YAML document holding only comments
        return {}
    if not isinstance(value, dict):
        raise SourceInvalid(
            f"{origin}: the top level must be a mapping of keys to values, "
            f"not a {type(value).__name__}"
        )
    tree: dict[str, Any] = _string_keys(value)
    return tree


def _string_keys(value: Any) -> Any:
    """The value with every mapping key a string (YAML allows ``1:`` and ``on:`` as keys)."""
    if isinstance(value, dict):
        return {_key(k): _string_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_string_keys(v) for v in value]
    return value


def _key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return key if isinstance(key, str) else str(key)


def _json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceInvalid(f"{origin}:{exc.lineno}:{exc.colno}: {exc.msg}") from None


@functools.cache
def _yaml_loader() -> Any:
    """PyYAML's safe loader with YAML 1.2's booleans: only true and false.

    YAML 1.1 also reads yes/no/on/off as booleans, so a country code ``NO``
    or a key ``on:`` would silently become ``False`` or ``True``; typed reads
    still take those words as booleans where a bool is asked for.
    """
    import yaml

    bool_tag = "tag:yaml.org,2002:bool"

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != bool_tag]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        bool_tag, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return Loader


def _yaml(text: str, origin: str) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise ImportError("reading YAML config needs PyYAML: pip install pyyaml") from exc

    try:
        return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        place = f"{mark.line + 1}:{mark.column + 1}:" if mark is not None else ""
        what = ": ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise SourceInvalid(f"{origin}:{place} {what}") from None
    except yaml.YAMLError as exc:
        raise SourceInvalid(f"{origin}: {exc}") from None


def _toml(text: str, origin: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        # Python 3.11's TOMLDecodeError has the place only in its message.
        match = _TOML_PLACE.search(message)
        if match is None:
            raise SourceInvalid(f"{origin}: {message}") from None
        what = message[: match.start()]
        if match.group(1) is None:  # at the end of the document
            lines = text.split("\n")
            line, column = len(lines), len(lines[-1]) + 1
            what += " at the end of the document"
        else:
            line, column = int(match.group(1)), int(match.group(2))
        raise SourceInvalid(f"{origin}:{line}:{column}: {what}") from None


_PARSERS: dict[str, Callable[[str, str], Any]] = {"json": _json, "yaml": _yaml, "toml": _toml}
