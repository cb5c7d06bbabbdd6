"""Backends by URL scheme: built-ins, a plugin package installed by entry point, and
the forms every backend parameter accepts."""

from __future__ import annotations

import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import micro
from micro import plugins
from micro.auth import Auth, KeySet
from micro.broker import resolve_broker
from micro.registry import MemoryRegistry, resolve_registry
from micro.registry import from_url as registry_from_url
from micro.selector.base import RoundRobinSelector
from micro.store import MemoryStore, resolve_store
from micro.store import from_url as store_from_url
from micro.sync import resolve_sync

PLUGIN = Path(__file__).parent.parent / "plugins"


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """micro-plugin-example installed: its package importable and its dist-info (with the
    entry points its pyproject.toml declares) on sys.path, as pip would leave them."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    info = tmp_path / "micro_plugin_example-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.rescan()
    yield
    monkeypatch.undo()
    sys.modules.pop("micro_plugin_example", None)
    plugins.rescan()


def test_built_in_schemes_are_listed() -> None:
    assert {"mdns", "etcd", "etcd+https", "memory"} <= set(plugins.schemes("registry"))
    assert {"http", "nats", "memory"} <= set(plugins.schemes("broker"))
    assert {"file", "redis", "postgres", "s3", "etcd"} <= set(plugins.schemes("store"))
    assert {"memory", "etcd"} <= set(plugins.schemes("sync"))
    assert {"random", "roundrobin", "hash"} <= set(plugins.schemes("selector"))
    assert {"json", "msgpack", "proto", "bytes"} <= set(plugins.schemes("codec"))


def test_etcd_urls_map_to_one_endpoint_form() -> None:
    assert plugins.endpoint("etcd://10.0.0.1:2379", port=2379) == "http://10.0.0.1:2379"
    assert plugins.endpoint("etcd+https://e:2379/", port=2379) == "https://e:2379"
    assert plugins.endpoint("etcd+http://", port=2379) == "http://127.0.0.1:2379"
    assert plugins.endpoint("etcd", port=2379) == "http://127.0.0.1:2379"
    registry: Any = registry_from_url("etcd+https://e.example:2379")
    assert registry.client.endpoint == "https://e.example:2379"


def test_scheme_of() -> None:
    assert plugins.scheme_of("etcd://h:1") == "etcd"
    assert plugins.scheme_of("file:data.db") == "file"
    assert plugins.scheme_of("hash:user") == "hash"
    assert plugins.scheme_of("MDNS") == "mdns"
    assert plugins.scheme_of("http?deliver_timeout=5s") == "http"


def test_an_unknown_scheme_names_the_installed_ones() -> None:
    with pytest.raises(ValueError, match="unknown registry 'zz://h'") as info:
        registry_from_url("zz://h")
    assert "installed schemes: " in str(info.value)
    assert "mdns" in str(info.value) and "etcd+https" in str(info.value)


def test_a_well_known_scheme_says_what_provides_it() -> None:
    with pytest.raises(plugins.UnknownScheme) as info:
        registry_from_url("consul://127.0.0.1:8500")
    message = str(info.value)
    assert "Consul plugin" in message and "group 'micro.registry'" in message
    with pytest.raises(plugins.UnknownScheme, match="RabbitMQ plugin"):
        plugins.create("broker", "rabbitmq://127.0.0.1")
    with pytest.raises(plugins.UnknownScheme, match="Kafka plugin"):
        plugins.create("broker", "kafka://127.0.0.1:9092")


def test_the_plugin_by_url(example_plugin: None) -> None:
    assert "example" in plugins.schemes("registry")
    registry: Any = registry_from_url("example://somewhere")
    assert type(registry).__name__ == "ExampleRegistry"
    assert registry.url == "example://somewhere"
    store: Any = store_from_url("example://data")
    assert type(store).__name__ == "ExampleStore"
    # shared per URL, like the built-ins
    assert resolve_store("example://data") is resolve_store("example://data")


def test_the_plugin_from_the_environment(
    example_plugin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MICRO_REGISTRY", "example://from-env")
    registry: Any = resolve_registry(None)
    assert type(registry).__name__ == "ExampleRegistry"
    assert registry.url == "example://from-env"


def test_the_plugin_is_gone_once_removed() -> None:
    with pytest.raises(plugins.UnknownScheme):
        registry_from_url("example://x")


@pytest.mark.anyio
async def test_a_service_found_through_the_plugin_registry(
    example_plugin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service and a client on MICRO_REGISTRY=example://..., the client selecting with
    the plugin's selector: the call goes through the plugin's registry."""
    monkeypatch.setenv("MICRO_REGISTRY", "example://calls")

    class Echo:
        async def say(self, req: dict[str, str]) -> dict[str, str]:
            return {"said": req["text"]}

    service = micro.Service("echo", address="127.0.0.1:0", broker="memory", store="memory")
    service.handle(Echo())
    with anyio.fail_after(30):
        async with service.running(), micro.Client(selector="first") as client:
            assert type(client.registry).__name__ == "ExampleRegistry"
            assert type(client.selector).__name__ == "FirstSelector"
            records = await client.registry.get_service("echo")
            assert [n.address for r in records for n in r.nodes] == [service.address]
            assert await client.call("echo", "Echo.Say", {"text": "hi"}) == {"said": "hi"}


def test_a_plugin_registered_in_code_overrides() -> None:
    made: list[str] = []

    def factory(url: str) -> MemoryRegistry:
        made.append(url)
        return MemoryRegistry()

    plugins.register("registry", "inproc", factory)
    try:
        assert isinstance(registry_from_url("inproc://a"), MemoryRegistry)
        plugins.rescan()  # registrations survive a rescan
        registry_from_url("inproc://b")
        assert made == ["inproc://a", "inproc://b"]
    finally:
        plugins._registered["registry"].pop("inproc")
        plugins.rescan()


@pytest.mark.parametrize(
    ("make", "accepted"),
    [
        (lambda: resolve_registry(42), "registry must be a registry object"),  # type: ignore[arg-type]
        (lambda: resolve_store(object()), "store must be a store object"),  # type: ignore[arg-type]
        (lambda: resolve_sync(b"etcd://x"), "sync must be a sync object"),  # type: ignore[arg-type]
        (lambda: resolve_broker(3.5, client=None), "broker must be a broker object"),  # type: ignore[arg-type]
        (lambda: micro.Client(registry=["memory"]), "registry must be"),  # type: ignore[arg-type]
        (lambda: micro.Client(selector=7), "selector must be a selector object"),  # type: ignore[arg-type]
        (lambda: Auth(KeySet.generate(), store=1), "store must be"),  # type: ignore[arg-type]
    ],
)
def test_a_wrong_type_says_what_is_accepted(make: Any, accepted: str) -> None:
    with pytest.raises(TypeError, match=accepted) as info:
        make()
    assert "URL string" in str(info.value)


def test_objects_and_urls_are_accepted_alike() -> None:
    registry = MemoryRegistry()
    assert resolve_registry(registry) is registry
    assert isinstance(resolve_registry("memory"), MemoryRegistry)
    store = MemoryStore()
    assert resolve_store(store) is store
    selector = RoundRobinSelector()
    assert micro.Client(selector=selector).selector is selector
    assert isinstance(micro.Client(selector="roundrobin").selector, RoundRobinSelector)
    assert Auth(KeySet.generate(), store=store).store is store


@pytest.mark.anyio
async def test_auth_with_a_store_url() -> None:
    name = f"alice-{uuid.uuid4().hex}"
    async with Auth(KeySet.generate(), store="memory") as auth:
        # the process's memory store, as Service(store="memory") has
        assert auth.store is resolve_store("memory")
        account, secret = await auth.generate(name, secret="s3cret")
        token = await auth.token(name, "s3cret")
        assert account.id == name and secret == "s3cret"
        assert auth.inspect(token.access_token).id == name


@pytest.mark.anyio
async def test_config_sources_by_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from micro.config import Config, EnvSource, EtcdSource, FileSource, source

    path = tmp_path / "app.json"
    path.write_text('{"db": {"host": "file", "port": 1}}')
    monkeypatch.setenv("PLUGTEST_DB__PORT", "2")
    config = Config(sources=[{"db": {"user": "u"}}, f"file://{path}", "env:PLUGTEST_"])
    async with config:
        assert config.get("db") == {"user": "u", "host": "file", "port": "2"}
        assert config.get_int("db.port") == 2
    etcd: Any = source("etcd+https://e.example:2379/config/app?optional=true")
    assert isinstance(etcd, EtcdSource)
    assert isinstance(source("file:relative.yaml?optional=1"), FileSource)
    assert isinstance(source("env:APP_"), EnvSource)
    with pytest.raises(ValueError, match="unknown config source option 'x'"):
        source("file:a.yaml?x=1")
    with pytest.raises(TypeError, match="config must be a config object"):
        Config(sources=[42])  # type: ignore[list-item]
