"""The wiring: a server check on every call, and a client that signs its calls.

:class:`ServerAuth` is a service's call guard, run before a request is
decoded and before any middleware, so it sees every entry point the same
way: plain HTTP/1.1 and HTTP/2 calls, gRPC calls of all four kinds, the HTTP
broker's delivery endpoint, and (as the server's route guard) the plain GET
routes such as ``/metrics``. It reads the bearer token from the
``authorization`` metadata, verifies it into an account, asks the rules, and
either raises Unauthorized / Forbidden or lets the call run with the account
in context (:func:`micro.context.account`). The token is taken out of the
call's metadata, so handlers never see it and it does not travel on to the
services the handler calls: each hop authenticates as itself.

:class:`ClientAuth` gives a client the bearer token of one identity and
renews it before it expires.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio

from .. import context
from ..errors import Forbidden, Unauthorized
from .accounts import Account, AccountType
from .auth import Auth, Credentials
from .rules import Decision, Resource
from .tokens import InvalidToken, Token

if TYPE_CHECKING:
    from ..server.server import CallNext, Request

__all__ = ["ServerAuth", "ClientAuth", "bearer_token", "RESOURCE_TYPE"]

log = logging.getLogger("micro.auth")


class OutgoingCall(Protocol):
    """What client middleware that attaches credentials needs of an outgoing call:
    its metadata (:class:`micro.client.ClientRequest` has it), so auth and the
    client do not depend on each other."""

    metadata: dict[str, str]


_Call = TypeVar("_Call", bound=OutgoingCall)

#: the resource type of a service's endpoints in rules
RESOURCE_TYPE = "service"
#: a token is renewed once this share of its lifetime is left
RENEW_AT = 0.25


class _NoHeaderValues(logging.Filter):
    """Drop hpack's DEBUG records that carry header values (bearer tokens among them).

    hpack logs every header block it decodes, and every decoded header, at
    DEBUG; h2 already sends ``authorization`` never-indexed, which hpack
    redacts when encoding, but nothing redacts it when decoding.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG or not record.args:
            return True
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        return not any(isinstance(a, bytes | bytearray | memoryview | tuple) for a in args)


logging.getLogger("hpack.hpack").addFilter(_NoHeaderValues())


def bearer_token(value: str) -> str:
    """The token of an ``authorization: Bearer <token>`` value; InvalidToken otherwise."""
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("authorization must be 'Bearer <token>'")
    return token.strip()


class ServerAuth:
    """Server middleware: 401 without a valid token where one is needed, 403 without a grant.

    A service installs it as its server's call guard (:meth:`check_call`), so
    calls are checked before their request is decoded and before any other
    middleware runs; as a middleware it checks after decoding.
    :meth:`check_route` applies the same check to a service's plain GET routes
    (``/metrics``, ``/debug/stats``), the path standing for the endpoint.
    """

    def __init__(self, auth: Auth, service: str = "") -> None:
        self.auth = auth
        self.service = service

    async def __call__(self, request: Request, call_next: CallNext) -> Any:
        auth = self.auth
        md = request.metadata
        if auth.excluded(request.endpoint):
            context._set_account(md, None)
            return await call_next(request)
        header = md.get("authorization")
        account = self._check(header, request.service, request.endpoint)
        if header is not None:
            md = {k: v for k, v in md.items() if k != "authorization"}
            request.metadata = md
        context._set_account(md, account)
        return await call_next(request)

    def check_call(self, endpoint: str, metadata: dict[str, str]) -> None:
        """Check a call before its request is decoded (a server's call guard).

        Raises Unauthorized or Forbidden; otherwise sets the caller's account
        in context and takes the token out of ``metadata``.
        """
        if self.auth.excluded(endpoint):
            context._set_account(metadata, None)
            return
        account = self._check(metadata.pop("authorization", None), self.service, endpoint)
        context._set_account(metadata, account)

    def check_route(self, path: str, headers: Mapping[str, str]) -> None:
        """Check a GET route's caller; raises Unauthorized or Forbidden."""
        if not self.auth.excluded(path):
            self._check(headers.get("authorization"), self.service, path)

    def _check(self, header: str | None, service: str, endpoint: str) -> Account | None:
        auth = self.auth
        account: Account | None = None
        if header is not None:
            # A bad token is refused even where no token is needed: it is never
            # silently read as "anonymous".
            account = auth.inspect(bearer_token(header))
        elif auth.certificate_scopes is not None:
            account = certificate_account(auth.certificate_scopes)
        decision = auth.decide(account, Resource(RESOURCE_TYPE, service, endpoint))
        if decision is Decision.UNAUTHENTICATED:
            raise Unauthorized(f"{endpoint} needs a token", id=service)
        if decision is Decision.FORBIDDEN:
            assert account is not None
            raise Forbidden(f"account {account.id} may not call {service} {endpoint}", id=service)
        return account


def certificate_account(scopes: tuple[str, ...]) -> Account | None:
    """The service account of the call's verified client certificate, if it came with one."""
    identity = context.peer_identity()
    if not identity:
        return None
    return Account(identity, AccountType.SERVICE, scopes, {"authenticated_by": "certificate"})


class ClientAuth:
    """The bearer token of one identity for outgoing calls, renewed before it expires.

    The identity is a service ``account`` whose tokens ``auth`` mints
    directly (a service's own identity), or ``credentials`` exchanged with
    ``auth`` for a token pair that is then refreshed. Use it as a client
    middleware (``client.use(client_auth)``) or as call credentials
    (``client.credentials = client_auth.metadata``), which cover streams too.
    """

    def __init__(
        self,
        auth: Auth,
        *,
        account: Account | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        if (account is None) == (credentials is None):
            raise ValueError("ClientAuth needs exactly one of account= or credentials=")
        self.auth = auth
        self.account = account
        self.credentials = credentials
        self._token: Token | None = None
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        who = self.account.id if self.account is not None else self.credentials
        return f"ClientAuth({who!r})"

    async def token(self) -> Token:
        """The current token pair, renewed first when little of its lifetime is left."""
        current = self._token
        if current is not None and not _due(current):
            return current
        async with self._lock:
            current = self._token
            if current is None or _due(current):
                self._token = current = await self._renew(current)
        return current

    async def _renew(self, current: Token | None) -> Token:
        auth = self.auth
        if self.account is not None:
            return auth.issue(self.account)
        assert self.credentials is not None
        if current is not None and time.time() < current.expiry:
            try:
                return await auth.refresh(current.refresh_token)
            except Unauthorized:
                log.info("refreshing the token of %s failed; logging in again", self.credentials.id)
        return await auth.token(self.credentials.id, self.credentials.secret)

    async def metadata(self) -> dict[str, str]:
        """``{"authorization": "Bearer <access token>"}``."""
        token = await self.token()
        return {"authorization": f"Bearer {token.access_token}"}

    async def __call__(self, request: _Call, call_next: Callable[[_Call], Awaitable[Any]]) -> Any:
        if "authorization" not in request.metadata:
            request.metadata.update(await self.metadata())
        return await call_next(request)


def _due(token: Token) -> bool:
    lifetime = token.expiry - token.created
    return time.time() >= token.expiry - lifetime * RENEW_AT
