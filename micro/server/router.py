"""The table of endpoints a server answers, with lookup by wire name.

gRPC clients name methods ``/<package>.<Service>/<Method>``; a handler
registered as ``Greeter`` also answers ``helloworld.Greeter.SayHello`` unless a
handler registered under the full name exists.
"""

from __future__ import annotations

from .endpoint import Endpoint, endpoints_of

__all__ = ["Router"]


class Router:
    def __init__(self) -> None:
        self._endpoints: dict[str, Endpoint] = {}

    def add(self, handler: object, *, name: str | None = None) -> list[Endpoint]:
        eps = endpoints_of(handler, name)
        for ep in eps:
            self.add_endpoint(ep)
        return eps

    def add_endpoint(self, ep: Endpoint) -> None:
        if ep.name in self._endpoints:
            raise ValueError(f"endpoint {ep.name} is already registered")
        self._endpoints[ep.name] = ep

    def lookup(self, name: str) -> Endpoint | None:
        ep = self._endpoints.get(name)
        if ep is None and name.count(".") > 1:
            service, method = name.rsplit(".", 1)
            ep = self._endpoints.get(f"{service.rsplit('.', 1)[1]}.{method}")
        return ep

    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.values())
