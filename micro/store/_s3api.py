"""The S3 REST calls the S3 store makes, over httpx (AnyIO: asyncio and Trio).

Requests are signed with AWS Signature Version 4 by botocore's signer (the
one boto3 uses), never by code of ours. Only what the store needs is here:
GET, HEAD, PUT and DELETE of an object, and ListObjectsV2. Calls are retried
on network errors and on the 500/503 answers S3 asks clients to retry, at most
``ATTEMPTS`` times, all within the store's timeout; any other failure is
:class:`StoreUnavailable` with the server's error code and message, and a
call past the timeout is one that names it.
"""

from __future__ import annotations

import builtins
import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from functools import partial
from urllib.parse import quote, urlencode

import anyio
import httpx
from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from .base import StoreUnavailable

__all__ = ["S3Client", "Listed"]

#: tries of one call on a network error or a 500/503 answer
ATTEMPTS = 3
#: keys one ListObjectsV2 page holds (S3's maximum)
PAGE_SIZE = 1000

_quote = partial(quote, safe="-_.~")


@dataclass(frozen=True, slots=True)
class Listed:
    """One object of a listing."""

    name: str
    etag: str


class S3Client:
    """Signed S3 calls to one bucket; ``endpoint`` None means AWS's own, by region."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint: str | None,
        region: str,
        credentials: Credentials | None,
        timeout: float,
    ) -> None:
        self.bucket = bucket
        self.region = region
        if endpoint is None:  # AWS: virtual-hosted style
            self.base = f"https://{bucket}.s3.{region}.amazonaws.com"
        else:  # any other server: path style
            self.base = f"{endpoint.rstrip('/')}/{_quote(bucket)}"
        self.where = self.base if endpoint is None else f"{endpoint.rstrip('/')} bucket {bucket}"
        self._signer = None if credentials is None else S3SigV4Auth(credentials, "s3", region)
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None

    async def open(self) -> None:
        # trust_env=False: a proxy set for the web must not sit between a
        # service and its storage on a private network.
        self._http = httpx.AsyncClient(timeout=self.timeout, trust_env=False)

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def call(
        self,
        method: str,
        name: str = "",
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        expect: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """The answer to a signed call; raises StoreUnavailable unless its status is
        expected, or when it took more than ``timeout`` seconds, its retries included."""
        with anyio.move_on_after(self.timeout):
            return await self._call(method, name, params, headers, body, expect)
        # A server that accepts but never answers (a frozen process): httpx closes
        # the connection of a cancelled request, so none is left stuck in its pool.
        raise StoreUnavailable(
            f"s3 at {self.where} did not answer within {self.timeout:g} s "
            f"(the store's timeout) ({method} {name or '/'})"
        )

    async def _call(
        self,
        method: str,
        name: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        body: bytes,
        expect: tuple[int, ...],
    ) -> httpx.Response:
        url = f"{self.base}/{_quote(name, safe='-_.~/')}" if name else f"{self.base}/"
        if params:
            url += "?" + urlencode(sorted(params.items()), quote_via=quote, safe="-_.~")
        error = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                await anyio.sleep(0.05 * 2**attempt)
            http = self._http
            if http is None:
                raise StoreUnavailable(
                    "the s3 store is not open: use it inside `async with store:`"
                )
            signed = self._sign(method, url, headers or {}, body)
            try:
                response = await http.request(method, url, headers=signed, content=body)
            except httpx.TransportError as exc:
                error = f"is unreachable ({type(exc).__name__}: {exc})"
                continue
            if response.status_code in expect and not _missing_bucket(response):
                return response
            error = f"answered {response.status_code} {_error(response)}"
            if response.status_code not in (500, 503):
                break
        raise StoreUnavailable(f"s3 at {self.where} {error} ({method} {name or '/'})")

    async def list(self, prefix: str, *, start_after: str = "") -> AsyncIterator[list[Listed]]:
        """Pages of the objects whose names start with ``prefix``, in name order."""
        params = {"list-type": "2", "prefix": prefix, "max-keys": str(PAGE_SIZE)}
        if start_after:
            params["start-after"] = start_after
        while True:
            root = self._parse(await self.call("GET", params=params))
            page = [
                Listed(item.findtext("{*}Key") or "", (item.findtext("{*}ETag") or "").strip('"'))
                for item in root.iterfind("{*}Contents")
            ]
            yield page
            token = root.findtext("{*}NextContinuationToken")
            if root.findtext("{*}IsTruncated") != "true" or not token:
                return
            params = {**params, "continuation-token": token}
            params.pop("start-after", None)

    async def folders(self, prefix: str) -> builtins.list[str]:
        """The names up to the next ``/`` after ``prefix`` (ListObjectsV2's common
        prefixes with the delimiter ``/``), in name order."""
        params = {"list-type": "2", "prefix": prefix, "delimiter": "/", "max-keys": str(PAGE_SIZE)}
        found: builtins.list[str] = []
        while True:
            root = self._parse(await self.call("GET", params=params))
            found += [p.findtext("{*}Prefix") or "" for p in root.iterfind("{*}CommonPrefixes")]
            token = root.findtext("{*}NextContinuationToken")
            if root.findtext("{*}IsTruncated") != "true" or not token:
                return found
            params = {**params, "continuation-token": token}

    def _parse(self, response: httpx.Response) -> ElementTree.Element:
        try:
            return ElementTree.fromstring(response.content)
        except ElementTree.ParseError as exc:
            raise StoreUnavailable(f"s3 at {self.where} sent a bad listing: {exc}") from None

    def _sign(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> dict[str, str]:
        if self._signer is None:
            return dict(headers)
        request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
        self._signer.add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}


def _missing_bucket(response: httpx.Response) -> bool:
    """A 404 that is about the bucket, not the object (HEAD answers have no body to say)."""
    return response.status_code == 404 and b"<Code>NoSuchBucket</Code>" in response.content


def _error(response: httpx.Response) -> str:
    """``Code: Message`` from an S3 error document, or the start of the body."""
    try:
        root = ElementTree.fromstring(response.content)
    except ElementTree.ParseError:
        return response.text[:200].strip() or response.reason_phrase
    code, message = root.findtext("Code") or "", root.findtext("Message") or ""
    return f"{code}: {message}" if code else response.text[:200].strip()
