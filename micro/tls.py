"""TLS settings for serving and calling: certificates, the CA to trust, mutual TLS.

One :class:`TLSConfig` describes both sides of a service: the certificate
and key it serves with (and presents as a client, for mutual TLS), and the CA
bundle it trusts for its peers. Servers offer ALPN ``h2`` and ``http/1.1``,
so gRPC clients and curl both connect; clients offer ``h2``. Clients verify
the server's certificate and that it names the host they dialled (or
``server_name``). A call made by service name also checks that the
certificate names that service (``verify_service``): the registry says where
a service runs, the certificate proves it, so a node registered under a name
it holds no certificate for cannot take that service's calls. With
``client_auth`` the server requires a client certificate signed by the CA: a
peer without one cannot complete a call.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TLSConfig", "SERVER_ALPN", "CLIENT_ALPN"]

SERVER_ALPN = ["h2", "http/1.1"]
CLIENT_ALPN = ["h2"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Certificate, key and CA files (PEM); ``client_auth`` requires client certificates."""

    cert: PathLike | None = None
    key: PathLike | None = None
    #: the CA bundle peers are verified with; clients fall back to the system's
    ca: PathLike | None = None
    #: mutual TLS: the server requires a certificate signed by ``ca`` from every client
    client_auth: bool = False
    #: the name a server's certificate must carry (default: the host dialled)
    server_name: str | None = None
    #: calls by service name also need the server's certificate to name that
    #: service (a DNS alternative name, as :meth:`CertificateAuthority.issue` writes)
    verify_service: bool = True

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLSConfig needs both cert= and key=, or neither")
        if self.client_auth and self.ca is None:
            raise ValueError("client_auth (mutual TLS) needs ca= to verify client certificates")
        for name in ("cert", "key", "ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"TLS {name} file {os.fspath(path)!r} does not exist")

    def server_context(self) -> ssl.SSLContext:
        """The context a listener serves with (needs ``cert`` and ``key``)."""
        if self.cert is None or self.key is None:
            raise ValueError("serving TLS needs cert= and key=")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(SERVER_ALPN)
        if self.client_auth:
            assert self.ca is not None
            ctx.load_verify_locations(cafile=self.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """The context a client dials with; presents ``cert`` when there is one."""
        ctx = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if self.ca is None else os.fspath(self.ca)
        )
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert is not None and self.key is not None:
            ctx.load_cert_chain(self.cert, self.key)
        ctx.set_alpn_protocols(CLIENT_ALPN)
        return ctx
