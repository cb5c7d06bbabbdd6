"""ServiceOptions: arguments, then --micro-* flags, then MICRO_* variables, then defaults,
merged by one function."""

from __future__ import annotations

from pathlib import Path

import pytest

import micro
from micro.auth import Auth, KeySet
from micro.config import SERVICE_OPTIONS, ConfigError
from micro.options import OPTION_NAMES, ServiceOptions, build_options, security


def test_defaults() -> None:
    o = build_options({}, [], {})
    assert o == ServiceOptions()
    assert (o.version, o.address, o.retries, o.register_ttl) == ("latest", ":0", 2, 30.0)
    assert o.from_environment == frozenset()


def test_code_then_flags_then_variables() -> None:
    o = build_options(
        {"version": "3", "retries": None},
        ["--micro-version=2", "--micro-address=:9000", "--micro-grace-period=3s"],
        {"MICRO_VERSION": "1", "MICRO_ADDRESS": ":1", "MICRO_RETRIES": "5"},
    )
    assert o.version == "3"  # given in code
    assert o.address == ":9000"  # a flag beats a variable
    assert o.retries == 5  # None in code means "not given"
    assert o.grace_period == 3.0
    assert o.from_environment == {"address", "retries", "grace_period"}


def test_every_environment_option_is_a_field() -> None:
    assert set(SERVICE_OPTIONS) <= OPTION_NAMES


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="unknown service option"):
        build_options({"colour": "blue"}, [], {})
    with pytest.raises(ConfigError):
        build_options({}, ["--micro-retries=many"], {})


def test_auth_from_a_key_directory(tmp_path: Path) -> None:
    KeySet.generate().save(tmp_path / "keys")
    o = build_options({}, [], {"MICRO_AUTH_KEYS": str(tmp_path / "keys")})
    auth, tls = security(o)
    assert isinstance(auth, Auth) and tls is None
    given = Auth(KeySet.generate())
    assert security(build_options({"auth": given}, [], {}))[0] is given


def test_a_service_keeps_its_options() -> None:
    service = micro.Service(
        "opts", registry="memory", retries=4, argv=["--micro-version=7"], environ={}
    )
    assert service.options.retries == 4
    assert service.options.version == service.version == "7"
    assert service.options.from_environment == {"version"}
