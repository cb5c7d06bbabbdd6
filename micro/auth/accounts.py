"""Accounts: who calls. Users and services, their scopes, and their secrets.

An account is what a token stands for: an id, a type (``user`` or
``service``), the scopes rules grant access by, and free-form metadata.
Accounts that log in with a secret are kept in a store; the secret itself is
never kept, only its scrypt hash with a random salt, and checking one
compares hashes in constant time.
"""

from __future__ import annotations

import base64
import builtins
import functools
import hashlib
import hmac
import secrets

import anyio.to_thread
import msgspec

from ..account import Account, AccountType
from ..errors import BadRequest, Conflict, NotFound, Unauthorized
from ..store.base import Record, RecordNotFound, Store

__all__ = ["Account", "AccountType", "Accounts", "hash_secret", "check_secret", "new_secret"]

#: scrypt cost (n=2**14, r=8: 16 MiB and tens of milliseconds per check), the
#: interactive-login parameters the scrypt paper recommends.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
#: where accounts live in the store
DATABASE = "micro"
TABLE = "auth"
_PREFIX = "account/"


def new_secret() -> str:
    """A random secret: 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` for ``secret`` (a fresh random salt unless given)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_secret(secret: str, hashed: str) -> bool:
    """Whether ``secret`` hashes to ``hashed``; the comparison takes constant time."""
    try:
        scheme, n, r, p, salt, digest = hashed.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
        return hmac.compare_digest(got, _unb64(digest))
    except (ValueError, TypeError):
        return False


class _Stored(msgspec.Struct):
    id: str
    type: str
    scopes: list[str]
    metadata: dict[str, str]
    secret: str  # the hash, never the secret


class Accounts:
    """The accounts kept in a store (database ``micro``, table ``auth``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(
        self,
        id: str,
        *,
        type: AccountType | str = AccountType.USER,
        scopes: tuple[str, ...] | list[str] = (),
        metadata: dict[str, str] | None = None,
        secret: str | None = None,
    ) -> tuple[Account, str]:
        """Create an account; returns it and its secret (generated unless given).

        Raises Conflict if the id is taken, BadRequest for an empty id.
        """
        if not id:
            raise BadRequest("an account needs an id")
        if await self._read(id) is not None:
            raise Conflict(f"account {id} already exists")
        account = Account(id, AccountType(type), tuple(scopes), dict(metadata or {}))
        secret = secret if secret is not None else new_secret()
        hashed = await anyio.to_thread.run_sync(hash_secret, secret)
        stored = _Stored(id, account.type.value, list(account.scopes), account.metadata, hashed)
        await self.store.write(
            Record(_PREFIX + id, msgspec.json.encode(stored)), database=DATABASE, table=TABLE
        )
        return account, secret

    async def get(self, id: str) -> Account | None:
        """The account ``id``, or ``None``."""
        stored = await self._read(id)
        return None if stored is None else _account(stored)

    async def login(self, id: str, secret: str) -> Account:
        """The account if ``secret`` is its secret; Unauthorized otherwise (same message)."""
        stored = await self._read(id)
        # Hash even for an unknown id, so the answer takes as long either way.
        hashed = stored.secret if stored is not None else _dummy_hash()
        ok = await anyio.to_thread.run_sync(check_secret, secret, hashed)
        if stored is None or not ok:
            raise Unauthorized("invalid account id or secret")
        return _account(stored)

    async def delete(self, id: str) -> None:
        """Delete the account ``id``; NotFound if there is none."""
        if await self._read(id) is None:
            raise NotFound(f"no account {id}")
        await self.store.delete(_PREFIX + id, database=DATABASE, table=TABLE)

    async def list(self) -> builtins.list[Account]:
        """Every account, by id."""
        records = await self.store.read(_PREFIX, prefix=True, database=DATABASE, table=TABLE)
        accounts = [_account(msgspec.json.decode(r.value, type=_Stored)) for r in records]
        return sorted(accounts, key=lambda a: a.id)

    async def _read(self, id: str) -> _Stored | None:
        try:
            records = await self.store.read(_PREFIX + id, database=DATABASE, table=TABLE)
        except RecordNotFound:
            return None
        return msgspec.json.decode(records[0].value, type=_Stored)


def _account(stored: _Stored) -> Account:
    return Account(stored.id, AccountType(stored.type), tuple(stored.scopes), dict(stored.metadata))


@functools.cache
def _dummy_hash() -> str:
    return hash_secret("", salt=b"\0" * 16)
