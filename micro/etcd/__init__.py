"""The etcd client micro's registry, store, config and sync share.

etcd serves its v3 API as gRPC on its client port; this package speaks it on
one HTTP/2 connection per endpoint, with micro's own HTTP/2 and gRPC framing
and a small hand-written protobuf codec (:mod:`._proto`), so it needs no
protobuf or gRPC library. Every call, lease keepalive and watch of a process
to one etcd is a stream of that connection (:mod:`._grpc`).

:func:`shared_client` gives the process's one client per endpoint, which the
registry, store, sync and config sources use unless given one, so a service on
one etcd endpoint holds one client, and one TCP connection, to it, closed
after its last user.
"""

from __future__ import annotations

from ._records import (
    Compare,
    Delete,
    DeleteResult,
    EtcdUnavailable,
    KeyEvent,
    KeyValue,
    Lease,
    LeaseInfo,
    Put,
    PutResult,
    Range,
    RangeResult,
    RevisionCompacted,
    TxnResult,
    prefix_end,
)
from .client import DEFAULT_ENDPOINT, DEFAULT_TIMEOUT, EtcdClient
from .watch import Watch

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_TIMEOUT",
    "EtcdClient",
    "EtcdUnavailable",
    "RevisionCompacted",
    "KeyValue",
    "KeyEvent",
    "Compare",
    "Put",
    "Range",
    "Delete",
    "PutResult",
    "RangeResult",
    "DeleteResult",
    "TxnResult",
    "Lease",
    "LeaseInfo",
    "Watch",
    "prefix_end",
    "shared_client",
    "shared_clients",
]

_shared: dict[str, EtcdClient] = {}


def shared_client(endpoint: str = DEFAULT_ENDPOINT) -> EtcdClient:
    """The process's one EtcdClient for ``endpoint`` (``http://host:port``, ``https://...``,
    ``etcd://host:port`` or ``host:port``, with ``user:password@`` before the host for
    etcd's auth): every part naming the same endpoint (and user) gets the same client,
    opened by its first user and closed after its last."""
    client = EtcdClient(endpoint)
    return _shared.setdefault(_key(client), client)


def shared_clients() -> dict[str, EtcdClient]:
    """The shared clients by endpoint (``user@endpoint`` for a client with a user), a
    copy, to see which are open and by how many."""
    return dict(_shared)


def _key(client: EtcdClient) -> str:
    return client.endpoint if client.username is None else f"{client.username}@{client.endpoint}"
