"""The Auth API as endpoints, so tools and other services can use it over the network.

``service.handle(AuthHandler(auth), name=AUTH_HANDLER_NAME)`` serves
``micro.Auth.*``: ``Token`` and ``Refresh`` for anyone holding credentials
(grant them publicly with :data:`AUTH_SERVICE_RULES`), and the management endpoints (``Generate``,
``Accounts``, ``Delete``, ``Inspect``, ``Rules``, ``Grant``, ``Revoke``) for
accounts with the ``admin`` scope only. The handler checks that scope itself,
whatever the rules say, so a broad grant never opens account management.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import context
from ..errors import BadRequest, Forbidden, Unauthorized
from .accounts import Account
from .auth import Auth
from .rules import Access, Resource, Rule

__all__ = [
    "AuthHandler",
    "AUTH_HANDLER_NAME",
    "AUTH_SERVICE_RULES",
    "ADMIN_SCOPE",
    "AccountInfo",
    "AccountRequest",
    "GenerateRequest",
    "GenerateResponse",
    "TokenRequest",
    "RefreshRequest",
    "TokenResponse",
    "InspectRequest",
    "RuleInfo",
    "RulesResponse",
    "AccountsResponse",
    "RevokeRequest",
    "Empty",
]

AUTH_HANDLER_NAME = "micro.Auth"
ADMIN_SCOPE = "admin"

#: Rules a service serving :class:`AuthHandler` needs besides its own: anyone
#: may exchange credentials (or a refresh token) for tokens.
AUTH_SERVICE_RULES: tuple[Rule, ...] = (
    Rule("auth-token", "", Resource("service", "*", f"{AUTH_HANDLER_NAME}.Token"), priority=1000),
    Rule(
        "auth-refresh", "", Resource("service", "*", f"{AUTH_HANDLER_NAME}.Refresh"), priority=1000
    ),
)


@dataclass
class Empty:
    pass


@dataclass
class AccountInfo:
    id: str
    type: str
    scopes: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class GenerateRequest:
    id: str
    type: str = "user"
    scopes: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    secret: str | None = None

    def __repr__(self) -> str:
        return f"GenerateRequest(id={self.id!r}, type={self.type!r}, scopes={self.scopes!r})"


@dataclass
class GenerateResponse:
    account: AccountInfo
    secret: str

    def __repr__(self) -> str:
        return f"GenerateResponse(account={self.account!r})"


@dataclass
class TokenRequest:
    id: str
    secret: str

    def __repr__(self) -> str:
        return f"TokenRequest(id={self.id!r})"


@dataclass
class RefreshRequest:
    refresh_token: str

    def __repr__(self) -> str:
        return "RefreshRequest()"


@dataclass
class TokenResponse:
    access_token: str
    refresh_token: str
    created: float
    expiry: float

    def __repr__(self) -> str:
        return f"TokenResponse(created={self.created}, expiry={self.expiry})"


@dataclass
class InspectRequest:
    access_token: str

    def __repr__(self) -> str:
        return "InspectRequest()"


@dataclass
class AccountRequest:
    id: str


@dataclass
class AccountsResponse:
    accounts: list[AccountInfo]


@dataclass
class RuleInfo:
    id: str
    scope: str
    type: str = "service"
    name: str = "*"
    endpoint: str = "*"
    access: str = "grant"
    priority: int = 0


@dataclass
class RulesResponse:
    rules: list[RuleInfo]


@dataclass
class RevokeRequest:
    id: str


def _info(account: Account) -> AccountInfo:
    return AccountInfo(account.id, account.type.value, list(account.scopes), dict(account.metadata))


def _rule_info(rule: Rule) -> RuleInfo:
    r = rule.resource
    return RuleInfo(
        rule.id, rule.scope, r.type, r.name, r.endpoint, rule.access.value, rule.priority
    )


class AuthHandler:
    """``micro.Auth.*``: tokens for credentials, and account and rule management for admins."""

    def __init__(self, auth: Auth, *, admin_scope: str = ADMIN_SCOPE) -> None:
        self.auth = auth
        self.admin_scope = admin_scope

    def _admin(self) -> None:
        caller = context.account()
        if caller is None:
            raise Unauthorized("managing accounts and rules needs an admin token")
        if self.admin_scope not in caller.scopes:
            raise Forbidden(f"account {caller.id} lacks the {self.admin_scope} scope")

    async def token(self, req: TokenRequest) -> TokenResponse:
        """Exchange an account's id and secret for tokens."""
        t = await self.auth.token(req.id, req.secret)
        return TokenResponse(t.access_token, t.refresh_token, t.created, t.expiry)

    async def refresh(self, req: RefreshRequest) -> TokenResponse:
        """Exchange a refresh token for a new pair."""
        t = await self.auth.refresh(req.refresh_token)
        return TokenResponse(t.access_token, t.refresh_token, t.created, t.expiry)

    async def generate(self, req: GenerateRequest) -> GenerateResponse:
        self._admin()
        account, secret = await self.auth.generate(
            req.id, type=req.type, scopes=req.scopes, metadata=req.metadata, secret=req.secret
        )
        return GenerateResponse(_info(account), secret)

    async def accounts(self, req: Empty) -> AccountsResponse:
        self._admin()
        return AccountsResponse([_info(a) for a in await self.auth.list_accounts()])

    async def delete(self, req: AccountRequest) -> Empty:
        self._admin()
        await self.auth.delete_account(req.id)
        return Empty()

    async def inspect(self, req: InspectRequest) -> AccountInfo:
        self._admin()
        return _info(self.auth.inspect(req.access_token))

    async def rules(self, req: Empty) -> RulesResponse:
        self._admin()
        return RulesResponse([_rule_info(r) for r in self.auth.rules()])

    async def grant(self, req: RuleInfo) -> Empty:
        self._admin()
        try:
            access = Access(req.access)
        except ValueError:
            raise BadRequest(f"access must be grant or deny, not {req.access!r}") from None
        resource = Resource(req.type, req.name, req.endpoint)
        await self.auth.grant(Rule(req.id, req.scope, resource, access, req.priority))
        return Empty()

    async def revoke(self, req: RevokeRequest) -> Empty:
        self._admin()
        await self.auth.revoke(req.id)
        return Empty()
