"""A certificate authority for a deployment: certificates per service identity.

``CertificateAuthority.generate()`` makes a self-signed CA (ECDSA P-256);
``issue(identity, hosts=...)`` makes a certificate for one identity (a
service name, say), valid for serving and for client authentication, whose
subject names the identity and whose alternative names list the identity and
the hosts it is reached at. ``issue_files`` writes a certificate, its key and
the CA certificate to a directory and returns the :class:`TLSConfig` using
them. Private keys are written readable by their owner only.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .keys import write_private
from .tls import TLSConfig

__all__ = ["CertificateAuthority", "IssuedCertificate", "DEFAULT_HOSTS"]

#: where a service on this machine is reached: enough for development and tests
DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate and its private key, both PEM."""

    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:
        return f"IssuedCertificate({len(self.cert_pem)} bytes of certificate)"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _alt_names(identity: str, hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in (identity, *hosts):
        if host in seen or not host:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


class CertificateAuthority:
    """A CA certificate and its key, which sign the certificates of service identities."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.cert.subject.rfc4514_string()!r})"

    @classmethod
    def generate(cls, name: str = "micro CA", *, days: int = 3650) -> CertificateAuthority:
        """A new self-signed CA named ``name``, valid for ``days``."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, identity: str, *, hosts: Iterable[str] = DEFAULT_HOSTS, days: int = 365
    ) -> IssuedCertificate:
        """A certificate for ``identity`` (its common name), valid at ``hosts``."""
        if not identity:
            raise ValueError("a certificate needs an identity")
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(_alt_names(identity, hosts)), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def issue_files(
        self,
        directory: str | os.PathLike[str],
        identity: str,
        *,
        hosts: Iterable[str] = DEFAULT_HOSTS,
        days: int = 365,
        client_auth: bool = True,
    ) -> TLSConfig:
        """Write ``<identity>.crt``, ``<identity>.key`` and ``ca.crt``; their TLSConfig."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        issued = self.issue(identity, hosts=hosts, days=days)
        cert, key, ca = path / f"{identity}.crt", path / f"{identity}.key", path / "ca.crt"
        cert.write_bytes(issued.cert_pem)
        write_private(key, issued.key_pem)
        ca.write_bytes(self.cert_pem)
        return TLSConfig(cert=cert, key=key, ca=ca, client_auth=client_auth)

    def save(self, cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> None:
        """Write the CA certificate and (owner-only) its key, PEM."""
        Path(cert).write_bytes(self.cert_pem)
        write_private(Path(key), _key_pem(self.key))

    @classmethod
    def load(
        cls, cert: str | os.PathLike[str], key: str | os.PathLike[str]
    ) -> CertificateAuthority:
        """A CA from its PEM certificate and key files; ValueError naming a bad file."""
        try:
            certificate = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        except ValueError as exc:
            raise ValueError(f"{os.fspath(cert)}: {exc}") from None
        try:
            private = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
        except ValueError as exc:
            raise ValueError(f"{os.fspath(key)}: {exc}") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{os.fspath(key)}: the CA key must be an EC key")
        return cls(certificate, private)
