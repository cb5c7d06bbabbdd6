"""Who calls: an account's id, type, scopes and metadata.

A floor module: :func:`micro.context.account` returns an :class:`Account`
without the context depending on auth, which keeps accounts in a store and
mints their tokens (:mod:`micro.auth` re-exports both names).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["Account", "AccountType"]


class AccountType(enum.StrEnum):
    USER = "user"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Account:
    """Who a token belongs to."""

    id: str
    type: AccountType = AccountType.USER
    scopes: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", AccountType(self.type))
        object.__setattr__(self, "scopes", tuple(self.scopes))
