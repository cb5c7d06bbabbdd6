"""Endpoints from handler objects.

Every public ``async def`` method of a handler object is an endpoint named
``<Handler>.<Method>`` with both parts CamelCased, as in Go Micro
(``Helloworld.greeting`` -> ``Helloworld.Greeting``). The request and response
types come from the method's annotations; ``AsyncIterator[...]`` on the
parameter or the return marks the streaming kinds.
"""

from __future__ import annotations

import collections.abc
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..transport.dispatch import Kind
from .stream import Stream

__all__ = ["Endpoint", "Kind", "endpoint", "endpoints_of", "camel"]

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__micro_endpoint__"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One callable endpoint and what it takes and returns."""

    name: str
    handler: Callable[..., Any]
    request_type: Any
    response_type: Any
    kind: Kind = Kind.UNARY
    idempotent: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    #: the handler takes a :class:`~micro.server.stream.Stream` and drives both directions
    explicit_stream: bool = False


def endpoint(
    fn: F | None = None,
    *,
    name: str | None = None,
    idempotent: bool = False,
    metadata: dict[str, str] | None = None,
) -> Any:
    """Mark a handler method with options: ``@micro.endpoint(idempotent=True)``.

    ``idempotent`` endpoints may be retried even after the request reached a
    server; ``name`` overrides the CamelCased method name.
    """

    def mark(f: F) -> F:
        setattr(f, _ATTR, {"name": name, "idempotent": idempotent, "metadata": metadata or {}})
        return f

    return mark(fn) if fn is not None else mark


def camel(name: str) -> str:
    """``say_hello`` -> ``SayHello``; ``greeting`` -> ``Greeting``; ``Greeting`` unchanged."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _is_async_iterator(tp: Any) -> bool:
    origin = typing.get_origin(tp) or tp
    return origin in (
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
        collections.abc.AsyncGenerator,
    )


def _arg(tp: Any) -> Any:
    args = typing.get_args(tp)
    return args[0] if args else Any


def inspect_callable(fn: Callable[..., Any], name: str, **options: Any) -> Endpoint:
    """An Endpoint for one async callable taking one request argument."""
    if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
        raise TypeError(f"endpoint {name} must be an async function or async generator")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise TypeError(f"cannot resolve the annotations of {name}: {exc}") from exc
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) != 1:
        raise TypeError(f"endpoint {name} must take exactly one request argument")
    req_t = hints.get(params[0].name, Any)
    resp_t = hints.get("return", Any)
    doc = inspect.getdoc(fn)
    if doc:
        # The docstring travels in the registry record: what `micro describe`
        # shows and what agents read as the tool's description (MCP).
        options["metadata"] = {"description": doc, **(options.get("metadata") or {})}
    if req_t is Stream or typing.get_origin(req_t) is Stream:
        args = typing.get_args(req_t)
        return Endpoint(
            name,
            fn,
            args[0] if args else Any,
            args[1] if len(args) > 1 else Any,
            Kind.BIDI_STREAM,
            explicit_stream=True,
            **options,
        )
    streams_in = _is_async_iterator(req_t)
    streams_out = _is_async_iterator(resp_t) or inspect.isasyncgenfunction(fn)
    if streams_in:
        req_t = _arg(req_t)
    if streams_out:
        resp_t = _arg(resp_t) if _is_async_iterator(resp_t) else Any
    kind = {
        (False, False): Kind.UNARY,
        (False, True): Kind.SERVER_STREAM,
        (True, False): Kind.CLIENT_STREAM,
        (True, True): Kind.BIDI_STREAM,
    }[(streams_in, streams_out)]
    return Endpoint(name, fn, req_t, resp_t, kind, **options)


def endpoints_of(handler: object, name: str | None = None) -> list[Endpoint]:
    """The endpoints of a handler object's public async methods."""
    prefix = name or type(handler).__name__
    found = []
    for attr in dir(type(handler)):
        if attr.startswith("_"):
            continue
        fn = getattr(handler, attr)
        if not (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)):
            if callable(fn) and hasattr(fn, _ATTR):
                raise TypeError(
                    f"{prefix}.{camel(attr)} ({attr}) is marked as an endpoint but is not async"
                )
            continue
        opts = dict(getattr(fn, _ATTR, {}))
        method = opts.pop("name", None) or camel(attr)
        found.append(inspect_callable(fn, f"{prefix}.{method}", **opts))
    if not found:
        raise TypeError(f"{type(handler).__name__} has no public async methods to serve")
    return found
