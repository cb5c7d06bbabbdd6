"""Authentication and authorization: accounts, tokens, access rules, TLS.

Every service has an identity (a service account), every call can carry a
bearer token (a JWT signed with an Ed25519 or RSA key), and rules decide
which accounts may call what. ``Service(..., auth=Auth(KeySet.generate()))``
turns it on; ``tls=TLSConfig(...)`` serves and calls over TLS, mutual with
``client_auth=True``. The pure parts (:mod:`.rules`, :mod:`.tokens`,
:mod:`.keys`) do no I/O; :class:`Auth` keeps accounts and rules in a store;
:mod:`.middleware` wires them into servers and clients.
"""

from __future__ import annotations

from .accounts import Account, Accounts, AccountType, check_secret, hash_secret, new_secret
from .auth import DEFAULT_RULES, HEALTH_ENDPOINTS, Auth, Credentials
from .certs import CertificateAuthority, IssuedCertificate
from .handler import AUTH_HANDLER_NAME, AUTH_SERVICE_RULES, AuthHandler
from .keys import KeySet, key_id
from .middleware import ClientAuth, ServerAuth, bearer_token
from .rules import Access, Decision, Resource, Rule, decide, matches, sort_rules
from .tls import TLSConfig
from .tokens import InvalidToken, Token

__all__ = [
    "Access",
    "Account",
    "AccountType",
    "Accounts",
    "AUTH_HANDLER_NAME",
    "AUTH_SERVICE_RULES",
    "Auth",
    "AuthHandler",
    "CertificateAuthority",
    "ClientAuth",
    "Credentials",
    "DEFAULT_RULES",
    "Decision",
    "HEALTH_ENDPOINTS",
    "InvalidToken",
    "IssuedCertificate",
    "KeySet",
    "Resource",
    "Rule",
    "ServerAuth",
    "TLSConfig",
    "Token",
    "bearer_token",
    "check_secret",
    "decide",
    "hash_secret",
    "key_id",
    "matches",
    "new_secret",
    "sort_rules",
]
