"""TLS settings for serving and calling (:class:`micro.tls.TLSConfig`, re-exported here).

The settings live in the floor module :mod:`micro.tls`, so the client and the
server use them without depending on auth.
"""

from ..tls import CLIENT_ALPN, SERVER_ALPN, TLSConfig

__all__ = ["TLSConfig", "SERVER_ALPN", "CLIENT_ALPN"]
