"""Request metadata and deadline, carried in context variables.

A server sets them for each handler from the incoming call; the client reads
them for every outgoing call, so metadata and the remaining deadline flow on
to downstream services without being passed by hand.

Deadlines are absolute times on :func:`anyio.current_time`'s clock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from .account import Account

__all__ = [
    "metadata",
    "deadline",
    "remaining",
    "account",
    "peer_identity",
    "with_metadata",
    "with_deadline",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})
_metadata: ContextVar[Mapping[str, str]] = ContextVar("micro_metadata", default=_EMPTY)
_deadline: ContextVar[float | None] = ContextVar("micro_deadline", default=None)
_account: ContextVar[Account | None] = ContextVar("micro_account", default=None)
_peer_identity: ContextVar[str | None] = ContextVar("micro_peer_identity", default=None)


def metadata() -> Mapping[str, str]:
    """The metadata of the call being handled (lower-cased header names)."""
    return _metadata.get()


def deadline() -> float | None:
    """The absolute deadline of the call being handled, if it has one."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left before the current deadline, or ``None`` without one."""
    d = _deadline.get()
    return None if d is None else d - anyio.current_time()


def account() -> Account | None:
    """The account that made the call being handled (with auth on), else ``None``."""
    return _account.get()


def peer_identity() -> str | None:
    """The identity (common name) of the verified client certificate of the call being
    handled: set for calls on a mutual-TLS connection, else ``None``."""
    return _peer_identity.get()


@contextlib.contextmanager
def with_metadata(values: Mapping[str, str], *, replace: bool = False) -> Iterator[None]:
    """Add (or, with ``replace``, set) metadata for calls made inside the block."""
    merged = dict(values) if replace else {**_metadata.get(), **values}
    token = _metadata.set({k.lower(): v for k, v in merged.items()})
    try:
        yield
    finally:
        _metadata.reset(token)


@contextlib.contextmanager
def with_deadline(when: float | None) -> Iterator[None]:
    """Set the absolute deadline for calls made inside the block (the earlier one wins)."""
    current = _deadline.get()
    if when is not None and current is not None:
        when = min(when, current)
    token = _deadline.set(when if when is not None else current)
    try:
        yield
    finally:
        _deadline.reset(token)


def _set(md: Mapping[str, str], dl: float | None) -> None:
    """Set both for the current task (used by the server before running a handler)."""
    _metadata.set(md)
    _deadline.set(dl)


def _set_account(md: Mapping[str, str], who: Account | None) -> None:
    """Set the caller's account and its metadata (used by the auth middleware)."""
    _metadata.set(md)
    _account.set(who)


def _set_peer_identity(identity: str | None) -> None:
    """Set the connection's verified peer identity (used by the listener, per connection)."""
    _peer_identity.set(identity)
