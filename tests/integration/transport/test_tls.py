"""TLS and mutual TLS on real sockets: ALPN, server identity, client certificates, grpcio.

Certificates come from a CA generated for the test (micro.auth.CertificateAuthority);
a second CA plays the stranger whose certificates must not be trusted.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import grpc
import httpx
import pytest

import micro
from micro.auth import (
    Account,
    Auth,
    CertificateAuthority,
    KeySet,
    Resource,
    Rule,
    TLSConfig,
)
from micro.auth.tokens import issue
from micro.registry import MemoryRegistry

pytestmark = pytest.mark.anyio

KEYS = KeySet.generate()


class Greeter:
    async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        who = micro.context.account()
        return {"hello": req.get("name", ""), "account": None if who is None else who.id}

    async def echo_bytes(self, req: bytes) -> bytes:
        return req


class Certs:
    def __init__(self, root: Path) -> None:
        self.ca = CertificateAuthority.generate("test CA")
        self.stranger = CertificateAuthority.generate("stranger CA")
        self.server = self.ca.issue_files(root / "ca", "greeter", client_auth=False)
        self.mutual = TLSConfig(
            cert=self.server.cert, key=self.server.key, ca=self.server.ca, client_auth=True
        )
        self.caller = self.ca.issue_files(root / "ca", "caller")
        self.foreign = self.stranger.issue_files(root / "stranger", "caller")
        self.wrong_host = self.ca.issue_files(
            root / "wrong", "greeter", hosts=["elsewhere.test"], client_auth=False
        )
        self.trust_only = TLSConfig(ca=self.server.ca)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def registry() -> MemoryRegistry:
    return MemoryRegistry()


def make_service(registry: MemoryRegistry, tls: TLSConfig, **options: Any) -> micro.Service:
    service = micro.Service(
        "greeter", address="127.0.0.1:0", registry=registry, tls=tls, grace_period=2, **options
    )
    service.handle(Greeter())
    return service


@pytest.fixture
async def tls_service(registry: MemoryRegistry, certs: Certs) -> AsyncIterator[micro.Service]:
    async with make_service(registry, certs.server).running() as service:
        yield service


@pytest.fixture
async def mtls_service(registry: MemoryRegistry, certs: Certs) -> AsyncIterator[micro.Service]:
    async with make_service(registry, certs.mutual).running() as service:
        yield service


async def hello(client: micro.Client, content_type: str = "application/grpc+json") -> Any:
    return await client.call("greeter", "Greeter.Hello", {"name": "tls"}, content_type=content_type)


# -- TLS -----------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/grpc+json", "application/json"])
async def test_micro_calls_over_tls(
    tls_service: micro.Service, registry: MemoryRegistry, certs: Certs, content_type: str
) -> None:
    async with micro.Client(registry=registry, tls=certs.trust_only) as client:
        assert (await hello(client, content_type))["hello"] == "tls"


@pytest.mark.parametrize("http2", [False, True])
async def test_alpn_serves_http1_and_http2(
    tls_service: micro.Service, certs: Certs, http2: bool
) -> None:
    context = ssl.create_default_context(cafile=str(certs.server.ca))
    async with httpx.AsyncClient(verify=context, http2=http2, timeout=10) as http:
        response = await http.post(
            f"https://{tls_service.address}/Greeter/Hello", json={"name": "curl"}
        )
    assert response.status_code == 200
    assert response.json()["hello"] == "curl"
    assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")


async def test_the_client_verifies_the_server_identity(
    registry: MemoryRegistry, certs: Certs
) -> None:
    async with make_service(registry, certs.wrong_host).running():
        # A certificate from our CA, but for another host: refused.
        async with micro.Client(registry=registry, tls=certs.trust_only, retries=0) as client:
            with pytest.raises(micro.Unavailable, match=r"certificate|hostname|match"):
                await hello(client)
        # Unless the client expects that very name.
        named = TLSConfig(ca=certs.server.ca, server_name="elsewhere.test")
        async with micro.Client(registry=registry, tls=named) as client:
            assert (await hello(client))["hello"] == "tls"


async def test_a_call_by_name_needs_a_certificate_that_names_the_service(
    registry: MemoryRegistry, certs: Certs, tmp_path: Path
) -> None:
    # A certificate from our CA, valid for the host, but issued to another identity.
    billing = certs.ca.issue_files(tmp_path, "billing", client_auth=False)
    async with make_service(registry, billing).running() as impostor:
        async with micro.Client(registry=registry, tls=certs.trust_only, retries=0) as client:
            with pytest.raises(micro.Unavailable, match="does not name service 'greeter'"):
                await hello(client)
            with pytest.raises(micro.Unavailable, match="does not name service 'greeter'"):
                async with client.stream("greeter", "Greeter.Hello"):
                    pass
            # Dialled by address, only the host is checked, as for any TLS client.
            by_address = await client.call(
                "greeter", "Greeter.Hello", {"name": "tls"}, address=impostor.address
            )
            assert by_address["hello"] == "tls"
        lax = TLSConfig(ca=certs.server.ca, verify_service=False)
        async with micro.Client(registry=registry, tls=lax) as client:
            assert (await hello(client))["hello"] == "tls"


async def test_a_node_without_the_services_certificate_takes_none_of_its_calls(
    registry: MemoryRegistry, certs: Certs, tmp_path: Path
) -> None:
    billing = certs.ca.issue_files(tmp_path, "billing", client_auth=False)
    served: dict[str, int] = {"real": 0, "impostor": 0}

    class Counting(Greeter):
        def __init__(self, which: str) -> None:
            self.which = which

        async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
            served[self.which] += 1
            return await super().hello(req)

    real = micro.Service("greeter", address="127.0.0.1:0", registry=registry, tls=certs.server)
    real.handle(Counting("real"), name="Greeter")
    impostor = micro.Service("greeter", address="127.0.0.1:0", registry=registry, tls=billing)
    impostor.handle(Counting("impostor"), name="Greeter")
    async with (
        real.running(),
        impostor.running(),
        micro.Client(registry=registry, tls=certs.trust_only, retries=2) as client,
    ):
        for _ in range(20):
            assert (await hello(client))["hello"] == "tls"
    assert served == {"real": 20, "impostor": 0}


async def test_a_server_from_another_ca_is_refused(registry: MemoryRegistry, certs: Certs) -> None:
    stranger_server = TLSConfig(cert=certs.foreign.cert, key=certs.foreign.key)
    async with (
        make_service(registry, stranger_server).running(),
        micro.Client(registry=registry, tls=certs.trust_only, retries=0) as client,
    ):
        with pytest.raises(micro.Unavailable, match="certificate"):
            await hello(client)


async def test_plain_text_to_a_tls_port_fails_cleanly(
    tls_service: micro.Service, registry: MemoryRegistry, certs: Certs
) -> None:
    # HTTP/1.1 in plain text gets a 400 that says why.
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"http://{tls_service.address}/Greeter/Hello", json={})
    assert response.status_code == 400
    assert response.json()["detail"] == "this port speaks TLS"
    # h2c gets GOAWAY with INADEQUATE_SECURITY: the caller gets Unavailable naming it.
    async with micro.Client(registry=registry, retries=0) as client:
        with anyio.fail_after(10), pytest.raises(micro.Unavailable) as info:
            await hello(client)
    assert "INADEQUATE_SECURITY" in str(info.value)
    # ...and the service keeps serving TLS.
    async with micro.Client(registry=registry, tls=certs.trust_only) as client:
        assert (await hello(client))["hello"] == "tls"


# -- mutual TLS ----------------------------------------------------------------------


async def test_mtls_admits_a_client_with_a_certificate_from_the_ca(
    mtls_service: micro.Service, registry: MemoryRegistry, certs: Certs
) -> None:
    async with micro.Client(registry=registry, tls=certs.caller) as client:
        assert (await hello(client))["hello"] == "tls"


@pytest.mark.parametrize("who", ["no certificate", "another CA"])
async def test_mtls_refuses_other_clients(
    mtls_service: micro.Service, registry: MemoryRegistry, certs: Certs, who: str
) -> None:
    tls = certs.trust_only if who == "no certificate" else certs.foreign
    if who == "another CA":
        # It trusts our server, but its own certificate is from the stranger CA.
        tls = TLSConfig(cert=certs.foreign.cert, key=certs.foreign.key, ca=certs.server.ca)
    async with micro.Client(registry=registry, tls=tls, retries=0) as client:
        with anyio.fail_after(10), pytest.raises(micro.Unavailable):
            await hello(client)
    # httpx without a client certificate cannot complete a call either.
    context = ssl.create_default_context(cafile=str(certs.server.ca))
    async with httpx.AsyncClient(verify=context, timeout=10) as http:
        with pytest.raises(httpx.HTTPError):
            await http.post(f"https://{mtls_service.address}/Greeter/Hello", json={})
    # The service keeps serving those who may call it.
    async with micro.Client(registry=registry, tls=certs.caller) as client:
        assert (await hello(client))["hello"] == "tls"


def certificate_auth(scopes: list[str] | None) -> Auth:
    rules = [Rule("services", "service", Resource("service", "greeter", "*"))]
    return Auth(KEYS, rules=rules, certificate_scopes=scopes)


async def test_a_client_certificate_can_stand_for_a_service_account(
    registry: MemoryRegistry, certs: Certs
) -> None:
    service = make_service(registry, certs.mutual, auth=certificate_auth(["service"]))
    async with service.running():
        # No token: the caller is the service account its certificate names.
        async with micro.Client(registry=registry, tls=certs.caller) as client:
            assert await hello(client) == {"hello": "tls", "account": "caller"}
            plain = await hello(client, content_type="application/json")
            assert plain["account"] == "caller"
        # A token still says who is calling when there is one.
        token = issue(KEYS, Account("alice", scopes=("service",)), issuer="micro", ttl=60)
        async with micro.Client(registry=registry, tls=certs.caller) as client:
            result = await client.call(
                "greeter",
                "Greeter.Hello",
                {"name": "tls"},
                metadata={"authorization": f"Bearer {token}"},
            )
            assert result["account"] == "alice"


async def test_without_certificate_scopes_a_certificate_is_no_account(
    registry: MemoryRegistry, certs: Certs
) -> None:
    async with (
        make_service(registry, certs.mutual, auth=certificate_auth(None)).running(),
        micro.Client(registry=registry, tls=certs.caller) as client,
    ):
        with pytest.raises(micro.Unauthorized):
            await hello(client)
    # Nor is a connection without a client certificate, with certificate scopes on.
    one_way = TLSConfig(cert=certs.server.cert, key=certs.server.key, ca=certs.server.ca)
    async with (
        make_service(registry, one_way, auth=certificate_auth(["service"])).running(),
        micro.Client(registry=registry, tls=certs.trust_only) as client,
    ):
        with pytest.raises(micro.Unauthorized):
            await hello(client)


async def test_services_call_each_other_over_mtls_with_their_identities(
    registry: MemoryRegistry, certs: Certs, tmp_path: Path
) -> None:
    front_tls = certs.ca.issue_files(tmp_path, "front")

    class Front:
        def __init__(self, client: micro.Client) -> None:
            self.client = client

        async def relay(self, req: dict[str, Any]) -> dict[str, Any]:
            return dict(await self.client.call("greeter", "Greeter.Hello", {"name": "relay"}))

    greeter = make_service(registry, certs.mutual, auth=Auth(KEYS))
    front = micro.Service(
        "front", address="127.0.0.1:0", registry=registry, tls=front_tls, auth=Auth(KEYS)
    )
    front.handle(Front(front.client))
    token = issue(KEYS, Account("alice"), issuer="micro", ttl=60)
    async with (
        greeter.running(),
        front.running(),
        micro.Client(registry=registry, tls=certs.caller) as client,
    ):
        result = await client.call(
            "front", "Front.Relay", {}, metadata={"authorization": f"Bearer {token}"}
        )
        with pytest.raises(micro.Unauthorized):
            await client.call("front", "Front.Relay", {})
    assert result == {"hello": "relay", "account": "front"}


# -- grpcio over TLS -----------------------------------------------------------------


def _grpcio_call(address: str, certs: Certs, metadata: list[tuple[str, str]]) -> bytes:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(certs.caller.ca or "").read_bytes(),
        private_key=Path(certs.caller.key or "").read_bytes(),
        certificate_chain=Path(certs.caller.cert or "").read_bytes(),
    )
    with grpc.secure_channel(address, credentials) as channel:
        echo = channel.unary_unary("/Greeter/EchoBytes")
        result: bytes = echo(b"\x01\x02tls", timeout=10, metadata=metadata)
        return result


async def test_grpcio_calls_a_tls_service_with_a_token(
    registry: MemoryRegistry, certs: Certs
) -> None:
    service = make_service(registry, certs.mutual, auth=Auth(KEYS))
    token = issue(KEYS, Account("grpcio-client"), issuer="micro", ttl=60)
    async with service.running():
        good = [("authorization", f"Bearer {token}")]
        assert await anyio.to_thread.run_sync(_grpcio_call, service.address, certs, good) == (
            b"\x01\x02tls"
        )
        with pytest.raises(grpc.RpcError) as info:
            await anyio.to_thread.run_sync(_grpcio_call, service.address, certs, [])
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        forged = [("authorization", f"Bearer {token[:-4]}AAAA")]
        with pytest.raises(grpc.RpcError) as info:
            await anyio.to_thread.run_sync(_grpcio_call, service.address, certs, forged)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- configuration -------------------------------------------------------------------


def test_tls_config_errors_are_clear(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both cert= and key="):
        TLSConfig(cert=certs.server.cert)
    with pytest.raises(ValueError, match="needs ca="):
        TLSConfig(cert=certs.server.cert, key=certs.server.key, client_auth=True)
    with pytest.raises(FileNotFoundError, match=r"missing\.pem"):
        TLSConfig(ca=tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="serving TLS needs"):
        TLSConfig(ca=certs.server.ca).server_context()


def test_the_ca_saves_and_loads(certs: Certs, tmp_path: Path) -> None:
    certs.ca.save(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    loaded = CertificateAuthority.load(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert loaded.cert == certs.ca.cert
    (tmp_path / "bad.crt").write_text("nope")
    with pytest.raises(ValueError, match=r"bad\.crt"):
        CertificateAuthority.load(tmp_path / "bad.crt", tmp_path / "ca.key")


def test_tls_from_environment(certs: Certs) -> None:
    environ = {
        "MICRO_TLS_CERT": str(certs.server.cert),
        "MICRO_TLS_KEY": str(certs.server.key),
        "MICRO_TLS_CA": str(certs.server.ca),
        "MICRO_TLS_CLIENT_AUTH": "true",
        "MICRO_REGISTRY": "memory",
    }
    service = micro.Service("env", environ=environ, argv=[])
    assert service.tls is not None and service.tls.client_auth
    assert service.tls.verify_service
    lax = micro.Service("env", environ={**environ, "MICRO_TLS_VERIFY_SERVICE": "false"}, argv=[])
    assert lax.tls is not None and not lax.tls.verify_service
    for name in ("cert", "key", "ca"):
        assert str(getattr(service.tls, name)) == str(getattr(certs.mutual, name))


async def test_closing_tls_connections_logs_no_error(
    registry: MemoryRegistry, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # The service stops while the client's connections are open, then the other way round.
    async with (
        micro.Client(registry=registry, tls=certs.caller) as client,
        make_service(registry, certs.mutual).running(),
    ):
        assert (await hello(client))["hello"] == "tls"
    # The client leaves first and the service stops at once, while that connection winds down.
    async with (
        make_service(registry, certs.mutual).running(),
        micro.Client(registry=registry, tls=certs.caller) as client,
    ):
        assert (await hello(client))["hello"] == "tls"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
