"""Signing keys: generate, load, save and rotate them.

Tokens are signed with an asymmetric key, so a service that only verifies
tokens holds public keys and cannot mint any. A :class:`KeySet` holds at most
one private key, the one new tokens are signed with, and any number of public
keys tokens are verified with, each known by its ``kid``: the first 16 hex
digits of the SHA-256 of its public key, so a kid names exactly one key.
Rotating adds a new signing key and keeps the old public key, so tokens
signed before the rotation stay valid until they expire; retiring a kid
removes it.

On disk a key set is a directory: ``signing.pem`` (the private key, mode
0600, absent on verify-only hosts) and one ``<kid>.pub.pem`` per public key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

__all__ = ["KeySet", "PrivateKey", "PublicKey", "Algorithm", "key_id"]

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey
Algorithm = Literal["EdDSA", "RS256"]

SIGNING_FILE = "signing.pem"
PUBLIC_SUFFIX = ".pub.pem"
#: RSA keys under this size are refused (NIST SP 800-131A)
MIN_RSA_BITS = 2048


def key_id(key: PublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def algorithm_of(key: PublicKey | PrivateKey) -> Algorithm:
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        return "RS256"
    raise ValueError(f"unsupported key type {type(key).__name__}: use Ed25519 or RSA")


def _generate(algorithm: Algorithm) -> PrivateKey:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"unsupported algorithm {algorithm!r}: use EdDSA or RS256")


class KeySet:
    """One optional signing key plus the public keys tokens are verified with."""

    def __init__(
        self, signing: PrivateKey | None = None, verifying: Iterable[PublicKey] = ()
    ) -> None:
        self.signing = signing
        keys: dict[str, PublicKey] = {}
        for key in verifying:
            algorithm_of(key)
            keys[key_id(key)] = key
        if signing is not None:
            algorithm_of(signing)
            public = signing.public_key()
            keys[key_id(public)] = public
        self._public = keys

    def __repr__(self) -> str:
        return f"KeySet(signing={self.kid!r}, verifying={sorted(self._public)!r})"

    @classmethod
    def generate(cls, algorithm: Algorithm = "EdDSA") -> KeySet:
        """A key set with a new signing key (Ed25519 by default, or 3072-bit RSA)."""
        return cls(_generate(algorithm))

    @property
    def kid(self) -> str | None:
        """The kid of the signing key, if there is one."""
        return None if self.signing is None else key_id(self.signing.public_key())

    @property
    def algorithm(self) -> Algorithm | None:
        return None if self.signing is None else algorithm_of(self.signing)

    @property
    def public_keys(self) -> Mapping[str, PublicKey]:
        return dict(self._public)

    def public(self, kid: str) -> PublicKey | None:
        return self._public.get(kid)

    def rotate(self, algorithm: Algorithm | None = None) -> KeySet:
        """A new signing key; the old public keys keep verifying."""
        new = _generate(algorithm or self.algorithm or "EdDSA")
        return KeySet(new, self._public.values())

    def retire(self, kid: str) -> KeySet:
        """Stop accepting tokens signed with ``kid`` (not the current signing key)."""
        if kid == self.kid:
            raise ValueError(f"{kid} is the signing key: rotate before retiring it")
        if kid not in self._public:
            raise KeyError(kid)
        return KeySet(self.signing, [k for i, k in self._public.items() if i != kid])

    def verify_only(self) -> KeySet:
        """The same public keys without the private key, for services that only verify."""
        return KeySet(None, self._public.values())

    # -- files ---------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``signing.pem`` (0600) and ``<kid>.pub.pem`` files; stale ones are removed."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*" + PUBLIC_SUFFIX):
            if old.name[: -len(PUBLIC_SUFFIX)] not in self._public:
                old.unlink()
        for kid, key in self._public.items():
            pem = key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            (path / f"{kid}{PUBLIC_SUFFIX}").write_bytes(pem)
        signing = path / SIGNING_FILE
        if self.signing is None:
            signing.unlink(missing_ok=True)
            return
        pem = self.signing.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(signing, pem)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KeySet:
        """A key set from a directory written by :meth:`save`, or from one PEM file.

        A file may hold a private key (which signs) or a public key (verify
        only). Raises FileNotFoundError or ValueError naming the bad file.
        """
        p = Path(path)
        if p.is_file():
            return cls._from_files([p])
        if not p.is_dir():
            raise FileNotFoundError(f"no key file or directory at {p}")
        files = sorted(p.glob("*" + PUBLIC_SUFFIX))
        if (p / SIGNING_FILE).exists():
            files.append(p / SIGNING_FILE)
        if not files:
            raise FileNotFoundError(f"no keys in {p} (expected {SIGNING_FILE} or *{PUBLIC_SUFFIX})")
        return cls._from_files(files)

    @classmethod
    def _from_files(cls, files: list[Path]) -> KeySet:
        signing: PrivateKey | None = None
        public: list[PublicKey] = []
        for file in files:
            data = file.read_bytes()
            try:
                if b"PRIVATE KEY" in data:
                    private = serialization.load_pem_private_key(data, password=None)
                    if not isinstance(private, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
                        raise ValueError(f"unsupported key type {type(private).__name__}")
                    if signing is not None:
                        raise ValueError("a key set has one signing key")
                    signing = private
                else:
                    key = serialization.load_pem_public_key(data)
                    if not isinstance(key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
                        raise ValueError(f"unsupported key type {type(key).__name__}")
                    public.append(key)
            except ValueError as exc:
                raise ValueError(f"{file}: {exc}") from None
        return cls(signing, public)


def write_private(path: Path, data: bytes) -> None:
    """Write a private file readable by its owner only (created with mode 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
