"""micro.server.endpoint and micro.server.router: endpoints from handler objects."""

from __future__ import annotations

import typing
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any, TypedDict

import pytest

import micro
from micro.server.endpoint import Endpoint, Kind, camel, endpoints_of, inspect_callable
from micro.server.router import Router


@dataclass
class Request:
    name: str


@dataclass
class Response:
    message: str


class Event(TypedDict):
    kind: str


class Helloworld:
    async def greeting(self, req: Request) -> Response:
        return Response(f"Hello {req.name}")

    async def say_hello(self, req: Request) -> Response:
        return Response(f"Hi {req.name}")

    async def count(self, req: Request) -> AsyncIterator[Response]:
        yield Response("1")

    async def upload(self, reqs: AsyncIterator[Request]) -> Response:
        return Response("done")

    async def chat(self, reqs: AsyncIterator[Request]) -> AsyncIterator[Response]:
        async for req in reqs:
            yield Response(req.name)

    def helper(self, req: Request) -> Response:
        return Response("not an endpoint")

    async def _private(self, req: Request) -> Response:
        return Response("not an endpoint")

    async def __call__(self, req: Request) -> Response:
        return Response("not an endpoint")

    name = "a class attribute, not an endpoint"


def by_name(handler: object, prefix: str | None = None) -> dict[str, Endpoint]:
    return {ep.name: ep for ep in endpoints_of(handler, prefix)}


# -- naming -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python", "wire"),
    [
        ("greeting", "Greeting"),
        ("say_hello", "SayHello"),
        ("Greeting", "Greeting"),
        ("getHTTPStatus", "GetHTTPStatus"),
        ("get_http_status", "GetHttpStatus"),
        ("a", "A"),
        ("trailing_", "Trailing"),
        ("double__under", "DoubleUnder"),
        ("v2_api", "V2Api"),
    ],
)
def test_camel(python: str, wire: str) -> None:
    assert camel(python) == wire


def test_public_async_methods_only() -> None:
    assert sorted(by_name(Helloworld())) == [
        "Helloworld.Chat",
        "Helloworld.Count",
        "Helloworld.Greeting",
        "Helloworld.SayHello",
        "Helloworld.Upload",
    ]


def test_handler_name_override() -> None:
    assert sorted(by_name(Helloworld(), "Greeter")) == [
        "Greeter.Chat",
        "Greeter.Count",
        "Greeter.Greeting",
        "Greeter.SayHello",
        "Greeter.Upload",
    ]
    assert "helloworld.Greeter.SayHello" in by_name(Helloworld(), "helloworld.Greeter")


def test_handler_is_the_bound_method() -> None:
    handler = Helloworld()
    ep = by_name(handler)["Helloworld.Greeting"]
    assert ep.handler == handler.greeting
    assert ep.handler.__self__ is handler


def test_inherited_methods_are_endpoints() -> None:
    class Loud(Helloworld):
        async def shout(self, req: Request) -> Response:
            return Response(req.name.upper())

    names = by_name(Loud())
    assert "Loud.Shout" in names
    assert "Loud.Greeting" in names


def test_static_and_class_methods() -> None:
    class Tools:
        @staticmethod
        async def ping(req: Request) -> Response:
            return Response("pong")

        @classmethod
        async def version(cls, req: Request) -> Response:
            return Response("1")

    eps = by_name(Tools())
    assert eps["Tools.Ping"].request_type is Request
    assert eps["Tools.Version"].response_type is Response


def test_a_handler_without_async_methods_is_refused() -> None:
    class Sync:
        def greeting(self, req: Request) -> Response:
            return Response("")

    with pytest.raises(TypeError, match="Sync has no public async methods"):
        endpoints_of(Sync())
    with pytest.raises(TypeError):
        endpoints_of(object())


# -- the endpoint decorator ---------------------------------------------------


class Decorated:
    @micro.endpoint(name="Hello", idempotent=True, metadata={"stable": "yes"})
    async def greeting(self, req: Request) -> Response:
        return Response("")

    @micro.endpoint
    async def plain(self, req: Request) -> Response:
        return Response("")

    @micro.endpoint(idempotent=True)
    async def get_user(self, req: Request) -> Response:
        return Response("")

    async def undecorated(self, req: Request) -> Response:
        return Response("")


def test_endpoint_decorator_options() -> None:
    eps = by_name(Decorated())
    assert sorted(eps) == [
        "Decorated.GetUser",
        "Decorated.Hello",
        "Decorated.Plain",
        "Decorated.Undecorated",
    ]
    assert eps["Decorated.Hello"].idempotent is True
    assert eps["Decorated.Hello"].metadata == {"stable": "yes"}
    assert eps["Decorated.GetUser"].idempotent is True
    assert eps["Decorated.GetUser"].metadata == {}
    assert eps["Decorated.Plain"].idempotent is False
    assert eps["Decorated.Undecorated"].idempotent is False


def test_endpoint_decorator_returns_the_function() -> None:
    async def fn(req: Request) -> Response:
        return Response("")

    assert micro.endpoint(fn) is fn
    assert micro.endpoint(name="X")(fn) is fn


def test_decorated_name_keeps_the_handler_prefix() -> None:
    assert "Api.Hello" in by_name(Decorated(), "Api")


def test_a_marked_sync_method_is_refused() -> None:
    class Marked:
        async def ok(self, req: Request) -> Response:
            return Response("")

        @micro.endpoint(idempotent=True)
        def not_async(self, req: Request) -> Response:
            return Response("")

    with pytest.raises(TypeError, match="NotAsync"):
        endpoints_of(Marked())


# -- types and kinds ----------------------------------------------------------


def test_types_come_from_annotations() -> None:
    ep = by_name(Helloworld())["Helloworld.Greeting"]
    assert (ep.request_type, ep.response_type, ep.kind) == (Request, Response, Kind.UNARY)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Helloworld.Greeting", Kind.UNARY),
        ("Helloworld.Count", Kind.SERVER_STREAM),
        ("Helloworld.Upload", Kind.CLIENT_STREAM),
        ("Helloworld.Chat", Kind.BIDI_STREAM),
    ],
)
def test_kinds_from_annotations(name: str, kind: Kind) -> None:
    ep = by_name(Helloworld())[name]
    assert ep.kind is kind
    assert ep.request_type is Request  # unwrapped from AsyncIterator[...]
    assert ep.response_type is Response


def test_kind_properties() -> None:
    assert [k.streams_requests for k in Kind] == [False, False, True, True]
    assert [k.streams_responses for k in Kind] == [False, True, False, True]
    assert Kind.BIDI_STREAM == "bidi_stream"


class Kinds:
    async def untyped_gen(self, req: Request):  # type: ignore[no-untyped-def]
        yield 1

    async def gen_iterator(self, req: Request) -> AsyncIterator[Event]:
        yield {"kind": "x"}

    async def gen_generator(self, req: Request) -> AsyncGenerator[Event, None]:
        yield {"kind": "x"}

    async def gen_iterable(self, req: Request) -> AsyncIterable[Event]:
        yield {"kind": "x"}

    async def gen_typing(self, req: Request) -> typing.AsyncIterator[Event]:
        yield {"kind": "x"}

    async def in_iterable(self, reqs: AsyncIterable[Request]) -> Response:
        return Response("")

    async def in_typing(self, reqs: typing.AsyncIterator[Request]) -> Response:
        return Response("")

    async def untyped(self, req):  # type: ignore[no-untyped-def]
        return req

    async def builtin_types(self, req: dict[str, Any]) -> bytes:
        return b""

    async def typed_dict(self, req: Event) -> list[Event]:
        return [req]

    async def with_keyword_only(self, req: Request, *, extra: int = 0) -> Response:
        return Response("")


@pytest.mark.parametrize(
    ("name", "kind", "request_type", "response_type"),
    [
        ("UntypedGen", Kind.SERVER_STREAM, Request, Any),
        ("GenIterator", Kind.SERVER_STREAM, Request, Event),
        ("GenGenerator", Kind.SERVER_STREAM, Request, Event),
        ("GenIterable", Kind.SERVER_STREAM, Request, Event),
        ("GenTyping", Kind.SERVER_STREAM, Request, Event),
        ("InIterable", Kind.CLIENT_STREAM, Request, Response),
        ("InTyping", Kind.CLIENT_STREAM, Request, Response),
        ("Untyped", Kind.UNARY, Any, Any),
        ("BuiltinTypes", Kind.UNARY, dict[str, Any], bytes),
        ("TypedDict", Kind.UNARY, Event, list[Event]),
        ("WithKeywordOnly", Kind.UNARY, Request, Response),
    ],
)
def test_kinds_and_types(name: str, kind: Kind, request_type: Any, response_type: Any) -> None:
    ep = by_name(Kinds())[f"Kinds.{name}"]
    assert ep.kind is kind
    assert ep.request_type == request_type
    assert ep.response_type == response_type


# -- refusals -----------------------------------------------------------------


def test_a_sync_callable_is_refused() -> None:
    def sync(req: Request) -> Response:
        return Response("")

    with pytest.raises(TypeError, match=r"X\.Y must be an async function or async generator"):
        inspect_callable(sync, "X.Y")


def test_a_coroutine_returning_lambda_is_refused() -> None:
    with pytest.raises(TypeError, match="async"):
        inspect_callable(lambda req: None, "X.Y")


class Bad:
    async def none(self) -> Response:
        return Response("")

    async def two(self, a: Request, b: Request) -> Response:
        return Response("")

    async def defaulted(self, a: Request, b: int = 0) -> Response:
        return Response("")

    async def star(self, *reqs: Request) -> Response:
        return Response("")


@pytest.mark.parametrize("method", ["none", "two", "defaulted", "star"])
def test_wrong_arity_is_refused(method: str) -> None:
    with pytest.raises(TypeError, match=r"Bad\.X must take exactly one request argument"):
        inspect_callable(getattr(Bad(), method), "Bad.X")
    only = type("Only", (), {method: Bad.__dict__[method]})
    with pytest.raises(TypeError, match="exactly one request argument"):
        endpoints_of(only())


def test_bare_async_iterator_annotations_stream() -> None:
    class Bare:
        async def chat(self, reqs: AsyncIterator) -> AsyncIterator:  # type: ignore[type-arg]
            yield None

    ep = by_name(Bare())["Bare.Chat"]
    assert ep.kind is Kind.BIDI_STREAM
    assert ep.request_type is Any


def test_unresolvable_annotations_are_refused() -> None:
    class Broken:
        async def call(self, req: NoSuchType) -> Response:  # type: ignore[name-defined]  # noqa: F821
            return Response("")

    with pytest.raises(TypeError, match=r"cannot resolve the annotations of Broken\.Call"):
        endpoints_of(Broken())


# -- the router ---------------------------------------------------------------


def test_router_add_and_lookup() -> None:
    router = Router()
    added = router.add(Helloworld())
    assert {ep.name for ep in added} == {ep.name for ep in router.endpoints()}
    ep = router.lookup("Helloworld.Greeting")
    assert ep is not None
    assert ep.request_type is Request


@pytest.mark.parametrize("name", ["Helloworld.Nope", "Nope.Greeting", "Greeting", "", "."])
def test_router_unknown_names(name: str) -> None:
    router = Router()
    router.add(Helloworld())
    assert router.lookup(name) is None


@pytest.mark.parametrize(
    "name", ["helloworld.Helloworld.Greeting", "com.example.v1.Helloworld.Greeting"]
)
def test_router_falls_back_from_the_package_qualified_name(name: str) -> None:
    router = Router()
    router.add(Helloworld())
    ep = router.lookup(name)
    assert ep is not None
    assert ep.name == "Helloworld.Greeting"


def test_router_fallback_needs_the_same_service() -> None:
    router = Router()
    router.add(Helloworld())
    assert router.lookup("helloworld.Greeter.Greeting") is None


def test_router_prefers_the_full_name() -> None:
    router = Router()
    router.add(Helloworld(), name="Greeter")
    router.add(Helloworld(), name="helloworld.Greeter")
    full = router.lookup("helloworld.Greeter.SayHello")
    short = router.lookup("Greeter.SayHello")
    assert full is not None and short is not None
    assert full.name == "helloworld.Greeter.SayHello"
    assert short.name == "Greeter.SayHello"
    assert router.lookup("other.Greeter.SayHello") is short


def test_router_refuses_duplicates() -> None:
    router = Router()
    router.add(Helloworld())
    with pytest.raises(ValueError, match=r"Helloworld\.\w+ is already registered"):
        router.add(Helloworld())


def test_router_add_endpoint() -> None:
    async def ping(req: Request) -> Response:
        return Response("pong")

    router = Router()
    router.add_endpoint(inspect_callable(ping, "Health.Ping"))
    ep = router.lookup("grpc.health.v1.Health.Ping")
    assert ep is not None
    assert ep.handler is ping
