"""A real S3-compatible server for the test suite: moto's standalone server.

moto (``pip install 'moto[server]'``) serves the S3 REST API over HTTP; it runs
as its own process on a free loopback port, keeping objects in its memory.
Missing, it skips the tests that need it (and fails them under
``MICRO_REQUIRE_BACKENDS=1``). The suite's bucket is made with a signed
request, as any S3 client would.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ServerProcess, free_port

__all__ = ["s3_server", "fresh_s3_server", "start_s3", "make_bucket", "s3_url", "S3_BUCKET"]

#: the bucket every test works in (each under a prefix of its own)
S3_BUCKET = "micro-tests"
#: moto takes any credentials; these are what the tests sign with
ACCESS_KEY, SECRET_KEY = "testing-key", "testing-secret"


def _listening(url: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            httpx.get(url, timeout=1.0, trust_env=False)
            return True
        except httpx.HTTPError:
            return False

    return ready


def start_s3(workdir: Path) -> ServerProcess:
    """moto's S3 server on 127.0.0.1, with the suite's bucket made."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        reason = "moto's server not installed (pip install 'moto[server]')"
        if os.environ.get("MICRO_REQUIRE_BACKENDS") == "1":
            pytest.fail(reason + "; MICRO_REQUIRE_BACKENDS=1 requires it")
        pytest.skip(reason)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = ServerProcess("moto", argv, workdir, _listening(endpoint), endpoint)
    server.start()
    make_bucket(endpoint, S3_BUCKET)
    return server


def make_bucket(endpoint: str, bucket: str) -> None:
    """Create ``bucket`` with a SigV4-signed PUT."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest("PUT", f"{endpoint}/{bucket}", data=b"")
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", "us-east-1").add_auth(request)
    response = httpx.put(
        f"{endpoint}/{bucket}", headers=dict(request.headers), trust_env=False, timeout=10
    )
    assert response.status_code == 200, response.text


def s3_url(server: ServerProcess, prefix: str) -> str:
    """The store URL for objects under ``prefix`` in the suite's bucket."""
    return (
        f"s3://{ACCESS_KEY}:{SECRET_KEY}@{S3_BUCKET}/{prefix}"
        f"?endpoint={server.url}&region=us-east-1"
    )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One S3 server for the session; tests use unique prefixes. ``.url`` is its endpoint."""
    server = start_s3(tmp_path_factory.mktemp("s3"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_s3_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """An S3 server of the test's own, for tests that stop it."""
    server = start_s3(tmp_path)
    try:
        yield server
    finally:
        server.stop()
