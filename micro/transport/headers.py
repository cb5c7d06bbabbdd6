"""Header conventions shared by server and client (sans-IO).

Metadata travels as headers. Names are lower case; a ``-bin`` suffix marks a
base64 binary value in gRPC, which micro passes through untouched. Reserved
names (pseudo-headers, transport and ``grpc-*`` headers, ``micro-*`` control
headers) never become user metadata.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping

__all__ = [
    "RESERVED",
    "metadata_from_headers",
    "metadata_to_headers",
    "encode_grpc_message",
    "decode_grpc_message",
    "endpoint_from_path",
    "path_from_endpoint",
]

RESERVED = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "te",
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "accept",
        "accept-encoding",
        "expect",
        "trailer",
        "date",
        "server",
        "micro-endpoint",
        "micro-service",
        "micro-error",
        "http2-settings",
    }
)


def _is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith((":", "grpc-", "micro-"))


# RFC 9110 token characters for names (lower case only: HTTP/2 forbids upper case),
# and visible ASCII plus space and tab for values.
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_VALUE = re.compile(r"[\t\x20-\x7e]*\Z")


def metadata_from_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """User metadata from a header list (reserved names dropped, repeats joined by ``,``)."""
    md: dict[str, str] = {}
    for name, value in headers:
        if _is_reserved(name):
            continue
        md[name] = f"{md[name]},{value}" if name in md else value
    return md


def metadata_to_headers(md: Mapping[str, str]) -> list[tuple[str, str]]:
    """Headers for user metadata; reserved names are refused so they cannot be spoofed."""
    out = []
    for name, value in md.items():
        lname = name.lower()
        if _is_reserved(lname):
            raise ValueError(f"metadata key {name!r} is reserved")
        if not _NAME.match(lname):
            raise ValueError(f"metadata key {name!r} is not a valid header name")
        text = str(value)
        if not _VALUE.match(text):
            raise ValueError(
                f"metadata value for {name!r} must be printable ASCII "
                "(use a key ending in -bin with base64 for binary values)"
            )
        out.append((lname, text))
    return out


_GRPC_MESSAGE_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def encode_grpc_message(message: str) -> str:
    """Percent-encode a ``grpc-message`` value (the gRPC spec's rule)."""
    return urllib.parse.quote(message, safe=_GRPC_MESSAGE_SAFE)


def decode_grpc_message(value: str) -> str:
    return urllib.parse.unquote(value, errors="replace")


def endpoint_from_path(path: str) -> str | None:
    """``/Helloworld/Greeting`` -> ``Helloworld.Greeting``; also ``/pkg.Service/Method``.

    Returns ``None`` for paths that do not name an endpoint (``/``).
    """
    path = path.split("?", 1)[0].strip("/")
    if not path:
        return None
    service, sep, method = path.rpartition("/")
    if not sep or not service or not method:
        return None
    return f"{service}.{method}"


def path_from_endpoint(endpoint: str) -> str:
    """``Helloworld.Greeting`` -> ``/Helloworld/Greeting``; ``pkg.Svc.M`` -> ``/pkg.Svc/M``."""
    service, _, method = endpoint.rpartition(".")
    return f"/{service}/{method}"
