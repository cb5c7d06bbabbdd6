"""Tokens: JWTs signed with a key set, and their verification (sans-IO).

An access token carries its account (id, type, scopes, metadata) so any
service holding the public keys can check it without asking anyone. A
refresh token names only the account and is exchanged for a new pair.

Verification trusts nothing in a token before its signature is checked: the
``kid`` in the header only selects one of our own public keys, and the
algorithm is the one that key is for (never the header's ``alg``), so
``alg: none``, an HMAC signed with a public key, a token signed by a key we do
not hold, a changed byte, a cut-off token, an expired one or a refresh token
used as an access token are all refused the same way: :class:`InvalidToken`,
a 401 whose detail never echoes the token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from ..errors import Unauthorized
from .accounts import Account, AccountType
from .keys import KeySet, algorithm_of

__all__ = ["Token", "InvalidToken", "issue", "verify", "MAX_TOKEN_SIZE"]

Kind = Literal["access", "refresh"]
#: longer tokens are refused before parsing (a real one is well under 2 KiB)
MAX_TOKEN_SIZE = 8192
#: clock skew tolerated between the issuing and the verifying host
DEFAULT_LEEWAY = 5.0


class InvalidToken(Unauthorized):
    """A token that is malformed, forged, expired or of the wrong kind (401)."""


@dataclass(frozen=True, slots=True)
class Token:
    """An access token, the refresh token to renew it, and when the access token expires."""

    access_token: str
    refresh_token: str
    created: float
    expiry: float

    def __repr__(self) -> str:  # never print the tokens themselves
        return f"Token(created={self.created}, expiry={self.expiry})"


def issue(
    keys: KeySet,
    account: Account,
    *,
    issuer: str,
    ttl: float,
    kind: Kind = "access",
    now: float | None = None,
) -> str:
    """A signed JWT for ``account``, valid for ``ttl`` seconds from ``now``."""
    if keys.signing is None:
        raise ValueError("this key set has no signing key: it can verify tokens, not issue them")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": account.id,
        "iat": int(issued),
        "exp": int(issued + ttl),
        "jti": uuid.uuid4().hex,
        "kind": kind,
    }
    if kind == "access":
        claims["type"] = account.type.value
        claims["scopes"] = list(account.scopes)
        claims["metadata"] = dict(account.metadata)
    return jwt.encode(
        claims, keys.signing, algorithm=algorithm_of(keys.signing), headers={"kid": keys.kid}
    )


def verify(
    keys: KeySet,
    token: str,
    *,
    issuer: str,
    kind: Kind = "access",
    leeway: float = DEFAULT_LEEWAY,
) -> Account:
    """The account ``token`` stands for; raises InvalidToken for anything but a good token."""
    if not token or len(token) > MAX_TOKEN_SIZE:
        raise InvalidToken("invalid token")
    try:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        key = keys.public(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("invalid token: signed by an unknown key")
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm_of(key)],
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("token expired") from None
    except jwt.PyJWTError:
        raise InvalidToken("invalid token") from None
    if claims.get("kind") != kind:
        raise InvalidToken(f"invalid token: not an {kind} token")
    sub = claims["sub"]
    if not isinstance(sub, str) or not sub:
        raise InvalidToken("invalid token")
    if kind == "refresh":
        return Account(sub)
    try:
        return Account(
            sub,
            AccountType(claims.get("type", "user")),
            tuple(str(s) for s in claims.get("scopes") or ()),
            {str(k): str(v) for k, v in (claims.get("metadata") or {}).items()},
        )
    except (TypeError, ValueError, AttributeError):
        raise InvalidToken("invalid token") from None
