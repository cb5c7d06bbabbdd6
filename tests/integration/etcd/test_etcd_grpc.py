"""The etcd client speaks gRPC on one HTTP/2 connection per endpoint: every call, lease
keepalive and watch of a process to one etcd shares it, and a broken one is replaced."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import httpx
import pytest

import micro
from micro.auth import CertificateAuthority, TLSConfig
from micro.config import Config
from micro.errors import MicroError, Unauthorized
from micro.etcd import EtcdClient, EtcdUnavailable, KeyEvent, _grpc, shared_client
from micro.etcd import _proto as pb
from tests.servers import ServerProcess, free_port, require_binary

from .test_etcd_shared import connections_to

pytestmark = pytest.mark.anyio


def port_of(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def unique(name: str) -> bytes:
    return f"/test/grpc/{name}/{uuid.uuid4().hex}/".encode()


async def test_a_service_holds_one_connection_for_registry_store_sync_and_config(
    etcd_server: ServerProcess,
) -> None:
    url = etcd_server.url.replace("http://", "etcd://")
    prefix = unique("service").decode()
    service = micro.Service(
        f"one-conn-{uuid.uuid4().hex[:8]}",
        address="127.0.0.1:0",
        registry=url,
        store=url,
        sync=url,
        config=Config([f"{url}{prefix.rstrip('/')}"]),
        broker="memory",
        events="memory",
    )
    client = shared_client(etcd_server.url)
    with anyio.fail_after(30):
        async with service.running():
            assert service.config is not None
            assert client.users.count >= 4  # registry, store, sync and config
            async with client, client.watch(prefix.encode(), prefix=True) as events:
                async with service.sync.lock(f"{prefix}lock"):
                    await service.store.write(micro.store.Record("k", b"v"))
                    assert [r.value for r in await service.store.read("k")] == [b"v"]
                await client.put(f"{prefix}seen".encode(), b"1")
                event = await events.__anext__()
                while event.kv.key != f"{prefix}seen".encode():
                    event = await events.__anext__()
                # registry heartbeat and watch, store, lock (lease and keepalive), config
                # watch and our own watch: all of it on one TCP connection to etcd
                assert connections_to(port_of(etcd_server)) == 1
    assert client.users.count == 0
    assert connections_to(port_of(etcd_server)) == 0


async def test_concurrent_calls_and_watches_share_the_connection(
    etcd_server: ServerProcess,
) -> None:
    base = unique("concurrent")
    keys = [base + f"{i:03}".encode() for i in range(100)]
    async with EtcdClient(etcd_server.url) as etcd:
        async with (
            etcd.watch(base, prefix=True) as a,
            etcd.watch(base, prefix=True) as b,
            etcd.watch(keys[0]) as c,
        ):
            seen: dict[str, list[KeyEvent]] = {"a": [], "b": [], "c": []}

            async def collect(name: str, events: object, count: int) -> None:
                async for event in events:  # type: ignore[attr-defined]
                    seen[name].append(event)
                    if len(seen[name]) == count:
                        return

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(collect, "a", a, len(keys))
                    tg.start_soon(collect, "b", b, len(keys))
                    tg.start_soon(collect, "c", c, 1)
                    async with anyio.create_task_group() as writers:
                        for key in keys:
                            writers.start_soon(etcd.put, key, b"v")
                    assert connections_to(port_of(etcd_server)) == 1
            assert sorted(e.kv.key for e in seen["a"]) == keys
            assert sorted(e.kv.key for e in seen["b"]) == keys
            assert [e.kv.key for e in seen["c"]] == [keys[0]]
        # leaving the watches cancelled them; the connection carries on
        assert (await etcd.range(base, prefix=True, keys_only=True)).count == len(keys)
        assert connections_to(port_of(etcd_server)) == 1


async def test_values_larger_than_the_flow_control_windows(etcd_server: ServerProcess) -> None:
    base = unique("large")
    value = os.urandom(1024 * 1024)  # etcd takes requests up to 1.5 MiB
    async with EtcdClient(etcd_server.url, timeout=30) as etcd:
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(etcd.put, base + bytes([48 + i]), value)
        result = await etcd.range(base, prefix=True)  # one 6 MiB answer
        assert [kv.value == value for kv in result.kvs] == [True] * 6


async def test_the_first_call_after_a_restart_goes_on_a_new_connection(
    fresh_etcd_server: ServerProcess,
) -> None:
    server = fresh_etcd_server
    key = unique("restart")
    async with EtcdClient(server.url) as etcd:
        await etcd.put(key, b"1")
        assert connections_to(port_of(server)) == 1
        await anyio.to_thread.run_sync(server.restart)
        # the idle connection etcd closed is noticed before the call is sent on it
        kv = await etcd.get(key)
        assert kv is not None and kv.value == b"1"
        assert connections_to(port_of(server)) == 1


async def test_calls_during_an_outage_fail_clearly_and_then_recover(
    fresh_etcd_server: ServerProcess,
) -> None:
    server = fresh_etcd_server
    key = unique("outage")
    async with EtcdClient(server.url, timeout=2) as etcd:
        async with etcd.watch(key) as events:
            await etcd.put(key, b"before")
            assert (await events.__anext__()).kv.value == b"before"
            assert server.pid is not None
            os.kill(server.pid, signal.SIGKILL)  # no GOAWAY: the connection just breaks
            with anyio.fail_after(10), pytest.raises(EtcdUnavailable, match=server.url):
                await events.__anext__()
        await anyio.to_thread.run_sync(server.stop)
        with pytest.raises(EtcdUnavailable, match=server.url):
            await etcd.put(key, b"during")
        await anyio.to_thread.run_sync(server.start)
        with anyio.fail_after(10):
            while True:  # etcd may need a moment to elect itself after starting
                try:
                    await etcd.put(key, b"after")
                    break
                except EtcdUnavailable:
                    await anyio.sleep(0.1)
        kv = await etcd.get(key)
        assert kv is not None and kv.value == b"after"
        assert connections_to(port_of(server)) == 1
    assert connections_to(port_of(server)) == 0


@pytest.fixture
def tls_etcd(tmp_path: Path) -> Iterator[tuple[ServerProcess, TLSConfig]]:
    """An etcd serving its client port over TLS, with a certificate from a CA of the test's."""
    binary = require_binary("etcd", "etcd-server")
    tls = CertificateAuthority.generate("etcd test CA").issue_files(
        tmp_path / "certs", "etcd", hosts=["127.0.0.1"], client_auth=False
    )
    port, peer_port = free_port(), free_port()
    url, peer_url = f"https://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
    argv = [
        binary,
        "--name=tls",
        f"--data-dir={tmp_path / 'etcd'}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=tls={peer_url}",
        f"--cert-file={tls.cert}",
        f"--key-file={tls.key}",
        "--heartbeat-interval=10",
        "--election-timeout=100",
    ]

    def ready() -> bool:
        try:
            health = httpx.get(f"{url}/health", verify=tls.client_context(), timeout=1.0)
            return health.status_code == 200
        except httpx.HTTPError:
            return False

    server = ServerProcess("etcd", argv, tmp_path, ready, url)
    server.start()
    try:
        yield server, tls
    finally:
        server.stop()


async def test_tls_etcd_over_one_connection(tls_etcd: tuple[ServerProcess, TLSConfig]) -> None:
    server, tls = tls_etcd
    key = unique("tls")
    async with EtcdClient(server.url, verify=tls.client_context()) as etcd:
        async with etcd.watch(key) as events:
            await etcd.put(key, b"secret")
            assert (await events.__anext__()).kv.value == b"secret"
        assert connections_to(port_of(server)) == 1
    # a client that trusts only the system's CAs refuses etcd's certificate
    async with EtcdClient(server.url) as untrusting:
        with pytest.raises(EtcdUnavailable, match=server.url):
            await untrusting.get(key)


async def test_a_connection_near_its_last_stream_id_is_replaced(
    etcd_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HTTP/2 stream ids run out after a billion calls; pretend they run out after four.
    monkeypatch.setattr(_grpc, "LAST_STREAM_ID", 7)
    key = unique("stream-ids")
    async with EtcdClient(etcd_server.url) as etcd, etcd.watch(key, prefix=True) as events:
        for i in range(12):
            await etcd.put(key + str(i).encode(), b"v")
            assert (await events.__anext__()).kv.key == key + str(i).encode()
        # the watch keeps the first connection open; each later one closed when retired
        assert connections_to(port_of(etcd_server)) == 2
    assert connections_to(port_of(etcd_server)) == 0


async def test_a_call_left_unanswered_moves_later_calls_to_a_new_connection() -> None:
    accepted: list[anyio.abc.SocketStream] = []

    async def hold(stream: anyio.abc.SocketStream) -> None:
        accepted.append(stream)  # read nothing, answer nothing
        await anyio.sleep_forever()

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        url = f"http://127.0.0.1:{port}"
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, hold)
            async with EtcdClient(url, timeout=1) as etcd:
                for attempt in (1, 2):
                    with pytest.raises(EtcdUnavailable, match=f"{url} is unreachable"):
                        await etcd.get(b"k")
                    with anyio.fail_after(5):
                        while len(accepted) < attempt:  # the listener's task may lag
                            await anyio.sleep(0.01)
                    assert len(accepted) == attempt
            tg.cancel_scope.cancel()


async def test_answers_past_the_connection_window_keep_coming(etcd_server: ServerProcess) -> None:
    # Every answer's bytes must be given back to the connection's flow-control window
    # (16 MiB), or etcd stops sending once that much has been received.
    key = unique("window")
    value = b"w" * 16000  # an answer in one DATA frame
    async with EtcdClient(etcd_server.url) as etcd:
        await etcd.put(key, value)
        with anyio.fail_after(60):
            for _ in range(1500):  # 24 MB of answers
                kv = await etcd.get(key)
                assert kv is not None and len(kv.value) == len(value)


async def test_an_answer_that_is_not_grpc_is_a_clear_error() -> None:
    """Something other than etcd on the port (a proxy's error page) answers over HTTP/2."""

    async def proxy(stream: anyio.abc.SocketStream) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        await stream.send(conn.data_to_send())
        async with stream:
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        conn.send_headers(
                            event.stream_id, [(":status", "502"), ("content-type", "text/html")]
                        )
                        conn.send_data(event.stream_id, b"<html>proxy says no</html>", True)
                await stream.send(conn.data_to_send())

    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, proxy)
            async with EtcdClient(f"127.0.0.1:{port}") as etcd:
                with pytest.raises(
                    MicroError, match="answered 502 \\(text/html\\): <html>proxy says no</html>"
                ) as caught:
                    await etcd.get(b"k")
                assert caught.value.code == 502 and caught.value.id == "etcd"
                with pytest.raises(MicroError, match="answered 502"):
                    async with etcd.watch(b"k"):
                        pass
            tg.cancel_scope.cancel()


#: etcd's auth administration (rpc.proto), to turn auth on for the test
_ROLE_ADD: pb.Message = {1: pb.Field("name", pb.STRING)}
_USER_ADD: pb.Message = {1: pb.Field("name", pb.STRING), 2: pb.Field("password", pb.STRING)}
_GRANT_ROLE: pb.Message = {1: pb.Field("user", pb.STRING), 2: pb.Field("role", pb.STRING)}


async def test_etcd_auth_user_and_password(fresh_etcd_server: ServerProcess) -> None:
    server = fresh_etcd_server
    async with EtcdClient(server.url) as admin:
        conn = await admin._connection()
        auth = "/etcdserverpb.Auth/"
        await conn.unary(auth + "RoleAdd", pb.encode(_ROLE_ADD, {"name": "root"}))
        await conn.unary(auth + "UserAdd", pb.encode(_USER_ADD, {"name": "root", "password": "pw"}))
        await conn.unary(
            auth + "UserGrantRole", pb.encode(_GRANT_ROLE, {"user": "root", "role": "root"})
        )
        await conn.unary(auth + "AuthEnable", b"")
        with pytest.raises(MicroError, match="user name is empty"):
            await admin.put(b"/auth/k", b"anonymous")

    key = unique("auth")
    with_user = server.url.replace("http://", "http://root:pw@")
    async with EtcdClient(with_user) as etcd:
        assert etcd.endpoint == server.url and etcd.username == "root"  # no password in messages
        async with etcd.watch(key) as events:
            lease = await etcd.lease_grant(30)
            await etcd.put(key, b"v", lease=lease.id)
            assert (await events.__anext__()).kv.value == b"v"
            assert await etcd.lease_keepalive_once(lease.id) == 30
        conn = await etcd._connection()
        assert conn.token
        conn.token = "forgotten.1"  # as after etcd lets an unused token expire
        kv = await etcd.get(key)  # a new token, and the call again
        assert kv is not None and kv.value == b"v"
        conn.token = "forgotten.2"
        async with etcd.watch(key) as events:  # a new token, and the watch again
            await etcd.put(key, b"w")
            assert (await events.__anext__()).kv.value == b"w"
        assert connections_to(port_of(server)) == 1

    async with EtcdClient(server.url, username="root", password="wrong") as wrong:
        with pytest.raises(Unauthorized, match="refused user 'root'"):
            await wrong.get(key)
    assert shared_client(with_user) is shared_client(with_user)
    assert shared_client(with_user) is not shared_client(server.url)
