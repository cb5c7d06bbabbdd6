"""The etcd client's wire helpers and error mapping, and the registry's keys: no server."""

from __future__ import annotations

import pytest

from micro.errors import BadRequest, GrpcStatus, MicroError, NotFound, Unavailable
from micro.etcd import Compare, EtcdClient, EtcdUnavailable, KeyValue, RevisionCompacted, prefix_end
from micro.etcd._call import grpc_error
from micro.registry import EndpointInfo, Node, RegistryUnavailable, ServiceRecord
from micro.registry.etcd import EtcdRegistry, _decode, _encode
from tests.servers import free_port


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"/a/", b"/a0"), (b"a\xff", b"b"), (b"a\xff\xff", b"b"), (b"\xff", b"\x00"), (b"", b"\x00")],
)
def test_prefix_end(prefix: bytes, end: bytes) -> None:
    assert prefix_end(prefix) == end


def test_compare_wire_fields() -> None:
    # etcd's Compare: result EQUAL=0, NOT_EQUAL=3; target CREATE=1, MOD=2, VALUE=3
    assert Compare.absent(b"k").to_wire() == {
        "key": b"k",
        "target": 1,
        "result": 0,
        "create_revision": 0,
    }
    assert Compare(b"k", "VALUE", "NOT_EQUAL", b"v").to_wire()["value"] == b"v"
    assert Compare.unchanged(b"k", 7).to_wire()["mod_revision"] == 7
    with pytest.raises(ValueError, match="target"):
        Compare(b"k", "SIZE", "EQUAL", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        Compare(b"k", "VALUE", "EQUAL", 1)


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("etcd://10.0.0.1:2379", "http://10.0.0.1:2379"),
        ("127.0.0.1:2379", "http://127.0.0.1:2379"),
        ("https://etcd.example:2379/", "https://etcd.example:2379"),
    ],
)
def test_endpoint_forms(endpoint: str, url: str) -> None:
    assert EtcdClient(endpoint).endpoint == url


def test_etcd_grpc_status_becomes_the_error_for_its_code() -> None:
    error = grpc_error(GrpcStatus.NOT_FOUND, "etcdserver: requested lease not found")
    assert isinstance(error, NotFound) and error.grpc_status == GrpcStatus.NOT_FOUND
    assert error.detail == "etcdserver: requested lease not found" and error.id == "etcd"
    assert isinstance(grpc_error(GrpcStatus.INVALID_ARGUMENT, "bad"), BadRequest)
    unavailable = grpc_error(GrpcStatus.UNAVAILABLE, "etcdserver: no leader")
    assert isinstance(unavailable, EtcdUnavailable) and isinstance(unavailable, Unavailable)
    compacted = grpc_error(
        GrpcStatus.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"
    )
    assert isinstance(compacted, RevisionCompacted) and "compacted" in compacted.detail
    future = grpc_error(
        GrpcStatus.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"
    )
    assert isinstance(future, BadRequest) and not isinstance(future, RevisionCompacted)
    other = grpc_error(99, "something new")
    assert isinstance(other, MicroError) and other.detail == "something new"


def test_credentials_in_the_endpoint_are_etcd_auth_and_left_out_of_it() -> None:
    etcd = EtcdClient("etcd://root:p%40ss@10.0.0.1:2379")
    assert etcd.endpoint == "http://10.0.0.1:2379"
    assert (etcd.username, etcd._password) == ("root", "p@ss")
    assert EtcdClient("http://u:p@h:1", username="v", password="q").username == "v"
    assert EtcdClient("127.0.0.1:2379").username is None


@pytest.mark.anyio
async def test_unreachable_etcd_names_the_endpoint() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with EtcdClient(url, timeout=2) as etcd:
        with pytest.raises(EtcdUnavailable, match=url):
            await etcd.get(b"k")
        with pytest.raises(EtcdUnavailable, match=url):
            async with etcd.watch(b"k"):
                pass
    async with EtcdRegistry(url) as registry:
        with pytest.raises(RegistryUnavailable, match=url):
            await registry.get_service("svc")


@pytest.mark.anyio
async def test_client_outside_async_with_says_so() -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await EtcdClient().get(b"k")


def test_registry_keys_escape_slashes_and_percents() -> None:
    registry = EtcdRegistry(prefix="/p")
    key = registry._key("a/b%c", "n/1")
    assert key == b"/p/a%2Fb%25c/n%2F1"
    assert registry._split(key) == ("a/b%c", "n/1")


def test_node_record_round_trips() -> None:
    service = ServiceRecord(
        name="svc",
        version="2",
        metadata={"ключ": "значение"},
        endpoints=(EndpointInfo("H.M", {"type": "object"}, {"type": "string"}, {"a": "b"}),),
        nodes=(Node("n1", "127.0.0.1:1", {"z": "1"}), Node("n2", "127.0.0.1:2")),
    )
    stored = _decode(KeyValue(b"k", _encode(service, service.nodes[1])))
    assert stored is not None
    assert stored.nodes == (service.nodes[1],)
    assert (stored.name, stored.version, stored.metadata, stored.endpoints) == (
        service.name,
        service.version,
        service.metadata,
        service.endpoints,
    )
    assert _decode(KeyValue(b"k", b"not json")) is None
    assert _decode(KeyValue(b"k", b'{"nodes": 3}')) is None
