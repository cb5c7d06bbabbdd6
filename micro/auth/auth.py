"""Auth: accounts, tokens and rules behind one object, the API tools wrap.

An :class:`Auth` holds a key set (to sign and verify tokens), a store (where
accounts and granted rules are kept) and the rules in force. Everything a
command-line tool or an admin endpoint needs is a method here: ``generate``
an account, exchange its secret for a ``token``, ``refresh`` it, ``inspect``
a token, ``grant``, ``revoke`` and list ``rules``. The checks themselves are
pure functions of :mod:`.tokens` and :mod:`.rules`; this class only keeps
their inputs.

Rules given to the constructor are kept in memory; rules granted later are
also written to the store, so every process sharing the store (file, etcd,
Redis) sees them after :meth:`load` (a service reloads them periodically).
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType

import msgspec

from ..errors import BadRequest, NotFound, Unauthorized
from ..store import resolve_store
from ..store.base import Record, RecordNotFound, Store
from ..store.memory import MemoryStore
from .accounts import DATABASE, TABLE, Account, Accounts, AccountType
from .keys import KeySet
from .rules import Access, Decision, Resource, Rule, decide, matches, sort_rules
from .tokens import Token, issue, verify

__all__ = ["Auth", "Credentials", "DEFAULT_RULES", "HEALTH_ENDPOINTS"]

log = logging.getLogger("micro.auth")

#: Without rules of its own, any authenticated account may call anything and
#: nobody else anything: zero trust by default, usable out of the box.
DEFAULT_RULES: tuple[Rule, ...] = (Rule("default", "*", Resource("*", "*", "*")),)
#: endpoints (and GET paths) not checked unless asked: health probes come from
#: load balancers and orchestrators, which carry no tokens
HEALTH_ENDPOINTS: tuple[str, ...] = ("grpc.health.v1.Health.*", "/health", "/health/*")
#: 10 minutes: short enough that a revoked account stops soon, long enough to
#: keep token traffic negligible
DEFAULT_ACCESS_TTL = 600.0
#: a day: how long a client may go on refreshing without its secret
DEFAULT_REFRESH_TTL = 86400.0
_RULE_PREFIX = "rule/"


class _StoredRule(msgspec.Struct):
    id: str
    scope: str
    type: str
    name: str
    endpoint: str
    access: str
    priority: int


@dataclass(frozen=True, slots=True)
class Credentials:
    """An account id and its secret, exchanged for tokens with :meth:`Auth.token`."""

    id: str
    secret: str

    def __repr__(self) -> str:  # the secret never appears in logs or tracebacks
        return f"Credentials(id={self.id!r})"


class Auth:
    """Authentication and authorization for services: ``Service(..., auth=Auth(keys))``.

    ``keys`` signs and verifies tokens (a verify-only key set makes a service
    that checks tokens but cannot issue them); ``store`` keeps accounts and
    granted rules: a Store or a URL as a service takes (``memory``, ``file``,
    ``etcd://host:port``...), a service's own store unless given; ``rules`` are the
    rules in force besides the granted ones (:data:`DEFAULT_RULES` unless
    given); ``exclude`` lists endpoint patterns that are never checked.

    ``certificate_scopes``: with mutual TLS, a caller that sends no token is
    the service account its client certificate names (the certificate's
    common name), with these scopes. None (the default): certificates
    secure the connection, and only tokens say who is calling.
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        store: Store | str | None = None,
        rules: Iterable[Rule] | None = None,
        issuer: str = "micro",
        access_ttl: float = DEFAULT_ACCESS_TTL,
        refresh_ttl: float = DEFAULT_REFRESH_TTL,
        exclude: Iterable[str] = HEALTH_ENDPOINTS,
        service_scopes: Iterable[str] = ("service",),
        refresh_interval: float = 10.0,
        certificate_scopes: Iterable[str] | None = None,
    ) -> None:
        if access_ttl <= 0 or refresh_ttl <= 0:
            raise ValueError("token lifetimes must be positive")
        self.keys = keys
        self.issuer = issuer
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.exclude = tuple(exclude)
        self.service_scopes = tuple(service_scopes)
        #: scopes of a caller known by its client certificate alone (None: not known)
        self.certificate_scopes = None if certificate_scopes is None else tuple(certificate_scopes)
        #: seconds between reloads of granted rules while a service runs
        self.refresh_interval = refresh_interval
        # a URL names a store as for a service ("memory", "file", "etcd://..."),
        # one shared per process; a wrong type is a TypeError saying what is accepted
        self._store = None if store is None else resolve_store(store)
        self._owns_store = False
        self._static: dict[str, Rule] = {
            r.id: r for r in (DEFAULT_RULES if rules is None else rules)
        }
        self._granted: dict[str, Rule] = {}
        self._sorted: list[Rule] = sort_rules(self._static.values())

    def __repr__(self) -> str:
        return f"Auth(issuer={self.issuer!r}, keys={self.keys!r})"

    # -- lifecycle -------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = MemoryStore()
            self._owns_store = True
        return self._store

    def use_store(self, store: Store) -> None:
        """Keep accounts and rules in ``store`` unless a store was given (services do this)."""
        if self._store is None:
            self._store = store

    async def __aenter__(self) -> Auth:
        """Open a store of its own (standalone use); then :meth:`load` the granted rules."""
        if self._store is None or self._owns_store:
            await self.store.__aenter__()
            self._owns_store = True
        else:
            await self._store.__aenter__()
        await self.load()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.store.__aexit__(exc_type, exc, tb)

    # -- accounts --------------------------------------------------------------

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.store)

    async def generate(
        self,
        id: str,
        *,
        type: AccountType | str = AccountType.USER,
        scopes: Iterable[str] = (),
        metadata: Mapping[str, str] | None = None,
        secret: str | None = None,
    ) -> tuple[Account, str]:
        """Create an account; returns it and its secret (shown once, kept only hashed).

        Raises Conflict if ``id`` exists, BadRequest for an empty id or a bad type.
        """
        try:
            kind = AccountType(type)
        except ValueError:
            raise BadRequest(f"account type must be user or service, not {type!r}") from None
        return await self.accounts.create(
            id, type=kind, scopes=tuple(scopes), metadata=dict(metadata or {}), secret=secret
        )

    async def delete_account(self, id: str) -> None:
        """Delete the account ``id`` (its tokens stay valid until they expire)."""
        await self.accounts.delete(id)

    async def list_accounts(self) -> builtins.list[Account]:
        return await self.accounts.list()

    # -- tokens ----------------------------------------------------------------

    async def token(self, id: str, secret: str) -> Token:
        """Exchange an account's id and secret for an access and a refresh token.

        Raises Unauthorized (the same message whatever was wrong).
        """
        account = await self.accounts.login(id, secret)
        return self.issue(account)

    async def refresh(self, refresh_token: str) -> Token:
        """A new token pair for a refresh token whose account still exists (else 401)."""
        subject = verify(self.keys, refresh_token, issuer=self.issuer, kind="refresh")
        account = await self.accounts.get(subject.id)
        if account is None:
            raise Unauthorized("the account of this refresh token no longer exists")
        return self.issue(account)

    def issue(self, account: Account, *, now: float | None = None) -> Token:
        """Mint a token pair for ``account`` directly (a service's own identity)."""
        created = time.time() if now is None else now
        access = issue(self.keys, account, issuer=self.issuer, ttl=self.access_ttl, now=created)
        refresh = issue(
            self.keys,
            account,
            issuer=self.issuer,
            ttl=self.refresh_ttl,
            kind="refresh",
            now=created,
        )
        return Token(access, refresh, created, created + self.access_ttl)

    def inspect(self, access_token: str) -> Account:
        """The account an access token stands for; raises InvalidToken (401)."""
        return verify(self.keys, access_token, issuer=self.issuer)

    def service_account(self, name: str, *, node: str = "") -> Account:
        """The identity of service ``name``: a service account with :attr:`service_scopes`."""
        metadata = {"node": node} if node else {}
        return Account(name, AccountType.SERVICE, self.service_scopes, metadata)

    # -- rules -----------------------------------------------------------------

    def rules(self) -> builtins.list[Rule]:
        """The rules in force, in the order they are tried."""
        return list(self._sorted)

    async def grant(self, rule: Rule) -> None:
        """Add (or replace, by id) a rule, kept in the store."""
        if not rule.id:
            raise BadRequest("a rule needs an id")
        stored = _StoredRule(
            rule.id,
            rule.scope,
            rule.resource.type,
            rule.resource.name,
            rule.resource.endpoint,
            rule.access.value,
            rule.priority,
        )
        await self.store.write(
            Record(_RULE_PREFIX + rule.id, msgspec.json.encode(stored)),
            database=DATABASE,
            table=TABLE,
        )
        self._granted[rule.id] = rule
        self._resort()

    async def revoke(self, id: str) -> None:
        """Remove the rule ``id``, granted or given; NotFound if there is none."""
        if id not in self._granted and id not in self._static:
            raise NotFound(f"no rule {id}")
        self._static.pop(id, None)
        if self._granted.pop(id, None) is not None:
            await self.store.delete(_RULE_PREFIX + id, database=DATABASE, table=TABLE)
        self._resort()

    async def load(self) -> None:
        """Read the granted rules from the store (those granted by other processes too)."""
        try:
            records = await self.store.read(
                _RULE_PREFIX, prefix=True, database=DATABASE, table=TABLE
            )
        except RecordNotFound:
            records = []
        granted: dict[str, Rule] = {}
        for record in records:
            try:
                s = msgspec.json.decode(record.value, type=_StoredRule)
                granted[s.id] = Rule(
                    s.id,
                    s.scope,
                    Resource(s.type, s.name, s.endpoint),
                    Access(s.access),
                    s.priority,
                )
            except (msgspec.DecodeError, ValueError):
                log.warning("ignoring an unreadable rule at %s", record.key)
        self._granted = granted
        self._resort()

    def _resort(self) -> None:
        self._sorted = sort_rules({**self._static, **self._granted}.values())

    # -- decisions ---------------------------------------------------------------

    def excluded(self, endpoint: str) -> bool:
        """Whether calls to ``endpoint`` skip the check (health probes by default)."""
        return any(matches(pattern, endpoint) for pattern in self.exclude)

    def decide(self, account: Account | None, resource: Resource) -> Decision:
        """What the rules in force decide for ``account`` calling ``resource``."""
        return decide(self._sorted, account, resource)
