"""A service's own options from MICRO_* / --micro-*, and its config running in its task group."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import micro
from micro.config import file
from micro.config.base import ConfigError

from ..conftest import Greeter, Req, Resp

pytestmark = pytest.mark.anyio


def test_options_come_from_flags_then_env_and_code_wins() -> None:
    environ = {"MICRO_VERSION": "2.0", "MICRO_GRACE_PERIOD": "3s", "MICRO_REGISTRY": "memory"}
    argv = ["--micro-version=3.1", "--micro-register-ttl", "45s", "--other-flag"]
    svc = micro.Service("opts", argv=argv, environ=environ)
    assert svc.version == "3.1"  # the flag beats the variable
    assert svc.grace_period == 3.0
    assert svc.register_ttl == 45.0
    assert isinstance(svc.registry, micro.registry.MemoryRegistry)
    assert micro.Service("opts", version="9", argv=argv, environ=environ).version == "9"


def test_backends_are_chosen_by_flags_and_variables_alike() -> None:
    environ = {"MICRO_SYNC": "etcd://127.0.0.1:1", "MICRO_STORE": "memory"}
    svc = micro.Service("opts", argv=[], environ=environ)
    assert type(svc.sync).__name__ == "EtcdSync"
    svc = micro.Service("opts", argv=["--micro-sync=memory"], environ=environ)
    assert isinstance(svc.sync, micro.sync.MemorySync)
    with pytest.raises(ValueError, match="unknown sync 'zookeeper://x'"):
        micro.Service("opts", argv=["--micro-sync=zookeeper://x"], environ=environ)


def test_bad_option_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="--micro-adress"):
        micro.Service("bad", argv=["--micro-adress=:1"], environ={})
    with pytest.raises(ConfigError, match="MICRO_REGISTER_TTL"):
        micro.Service("bad", argv=[], environ={"MICRO_REGISTER_TTL": "soon"})


async def test_config_watchers_run_in_the_service(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    path.write_text('{"greeting": "Hello"}')
    config = micro.Config(sources=[file(str(path))])
    service = micro.Service(
        "configured", address="127.0.0.1:0", registry="memory", config=config, argv=[]
    )

    class Greeter2(Greeter):
        async def hello(self, req: Req) -> Resp:
            return Resp(message=f"{config.get('greeting')} {req.name}")

    service.handle(Greeter2(), name="Greeter")
    async with service.running(), micro.Client(registry="memory") as client:
        assert await client.call("configured", "Greeter.Hello", Req("a"), Resp) == Resp("Hello a")
        path.write_text('{"greeting": "Howdy"}')
        with anyio.fail_after(20):
            while (await client.call("configured", "Greeter.Hello", Req("b"), Resp)).message != (
                "Howdy b"
            ):
                await anyio.sleep(0.02)


async def test_missing_required_config_fails_the_start(tmp_path: Path) -> None:
    config = micro.Config(sources=[file(str(tmp_path / "absent.yaml"))])
    service = micro.Service("noconf", address="127.0.0.1:0", registry="memory", config=config)
    with pytest.raises(micro.MicroError, match=r"absent\.yaml"):
        async with service.running():
            pass
