"""Access rules and the decision they make (sans-IO).

A rule says which accounts (by ``scope``) may or may not (``access``) call a
resource (``type``, ``name``, ``endpoint``). To decide a request, the rules
whose resource matches it are tried from the highest ``priority`` down; the
first whose scope admits the caller decides. Nothing matching means deny.

Scopes: ``""`` admits everyone, even a caller without a token (public);
``"*"`` admits any authenticated account; any other value admits accounts
holding that scope. Resource fields match exactly, ``"*"`` matches anything,
and a trailing ``*`` matches by prefix (``"Greeter.*"``, ``"/api/*"``).

At equal priority a deny rule is tried before a grant, so a tie never opens
access; rules of the same priority and access are tried in id order, so the
decision never depends on the order rules were stored in.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .accounts import Account

__all__ = ["Access", "Decision", "Resource", "Rule", "decide", "matches", "sort_rules"]


class Access(enum.StrEnum):
    GRANT = "grant"
    DENY = "deny"


class Decision(enum.Enum):
    """What a request gets: through, 401 (no or bad credentials) or 403."""

    GRANTED = "granted"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True, slots=True)
class Resource:
    """What is called: ``Resource("service", "greeter", "Greeter.Hello")``."""

    type: str = "service"
    name: str = "*"
    endpoint: str = "*"


@dataclass(frozen=True, slots=True)
class Rule:
    """``scope`` may (``grant``) or may not (``deny``) call ``resource``."""

    id: str
    scope: str
    resource: Resource = field(default_factory=Resource)
    access: Access = Access.GRANT
    priority: int = 0

    def __post_init__(self) -> None:
        # Accept "grant"/"deny" strings from configuration and JSON.
        object.__setattr__(self, "access", Access(self.access))
        if isinstance(self.resource, dict):
            object.__setattr__(self, "resource", Resource(**self.resource))


def matches(pattern: str, value: str) -> bool:
    """``"*"`` matches anything, ``"x*"`` anything starting with ``x``, else equality."""
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return pattern == value


def _covers(rule: Resource, resource: Resource) -> bool:
    return (
        matches(rule.type, resource.type)
        and matches(rule.name, resource.name)
        and matches(rule.endpoint, resource.endpoint)
    )


def sort_rules(rules: Iterable[Rule]) -> list[Rule]:
    """The order :func:`decide` tries rules in."""
    return sorted(rules, key=lambda r: (-r.priority, r.access is not Access.DENY, r.id))


def _admits(scope: str, account: Account | None) -> bool:
    if scope == "":
        return True
    if account is None:
        return False
    return scope == "*" or scope in account.scopes


def decide(rules: Sequence[Rule], account: Account | None, resource: Resource) -> Decision:
    """Whether ``account`` (``None``: no token) may call ``resource``.

    ``rules`` must be in :func:`sort_rules` order. A denied caller without an
    account is UNAUTHENTICATED (a token might help), one with an account is
    FORBIDDEN.
    """
    for rule in rules:
        if not _covers(rule.resource, resource) or not _admits(rule.scope, account):
            continue
        if rule.access is Access.GRANT:
            return Decision.GRANTED
        break
    return Decision.UNAUTHENTICATED if account is None else Decision.FORBIDDEN
