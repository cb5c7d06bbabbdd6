"""A service's own options from MICRO_* variables and --micro-* flags."""

from __future__ import annotations

import os

import pytest

from micro.config import SERVICE_OPTIONS, ConfigError, InvalidValue, service_options


def test_nothing_set_gives_no_options() -> None:
    assert service_options([], {}) == {}


def test_environment_variables_are_typed() -> None:
    environ = {
        "MICRO_ADDRESS": ":8080",
        "MICRO_REGISTRY": "etcd://127.0.0.1:2379",
        "MICRO_BROKER": "nats://127.0.0.1:4222",
        "MICRO_STORE": "memory",
        "MICRO_REGISTER": "false",
        "MICRO_REGISTER_TTL": "30s",
        "MICRO_REGISTER_INTERVAL": "2.5",
        "MICRO_GRACE_PERIOD": "1m",
        "MICRO_MAX_MESSAGE_SIZE": "8MiB",
        "MICRO_MAX_CONCURRENT_STREAMS": "100",
        "MICRO_METADATA": "zone=eu,tier=gold",
        "MICRO_VERSION": "1.2",
        "MICRO_ADVERTISE": "10.0.0.1:8080",
        "MICRO_MDNS_INTERFACES": "127.0.0.1",  # someone else's variable: left alone
        "MICRO_REQUIRE_BACKENDS": "1",
        "PATH": "/bin",
    }
    assert service_options([], environ) == {
        "address": ":8080",
        "registry": "etcd://127.0.0.1:2379",
        "broker": "nats://127.0.0.1:4222",
        "store": "memory",
        "register": False,
        "register_ttl": 30.0,
        "register_interval": 2.5,
        "grace_period": 60.0,
        "max_message_size": 8 * 1024 * 1024,
        "max_concurrent_streams": 100,
        "metadata": {"zone": "eu", "tier": "gold"},
        "version": "1.2",
        "advertise": "10.0.0.1:8080",
    }


def test_flags_override_environment_variables() -> None:
    options = service_options(
        ["--micro-address=:9090", "--micro-register-ttl", "5s", "--micro-register"],
        {"MICRO_ADDRESS": ":8080", "MICRO_REGISTER_TTL": "30s", "MICRO_REGISTER": "false"},
    )
    assert options == {"address": ":9090", "register_ttl": 5.0, "register": True}


def test_application_flags_are_not_the_services() -> None:
    argv = ["--database.host=x", "run", "--micro-version=2"]
    assert service_options(argv, {}) == {"version": "2"}


def test_metadata_from_json_and_nested_variables() -> None:
    assert service_options(['--micro-metadata={"a": "b"}'], {}) == {"metadata": {"a": "b"}}
    assert service_options([], {"MICRO_METADATA__ZONE": "eu"}) == {"metadata": {"zone": "eu"}}


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(InvalidValue) as info:
        service_options([], {"MICRO_REGISTER_TTL": "soon"})
    assert info.value.detail.startswith("MICRO_REGISTER_TTL is 'soon', not a duration")


def test_a_bad_value_names_the_flag() -> None:
    with pytest.raises(InvalidValue) as info:
        service_options(["--micro-max-concurrent-streams=lots"], {})
    assert "--micro-max-concurrent-streams is 'lots', not an int" in info.value.detail


def test_an_unknown_flag_is_an_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        service_options(["--micro-adress=:8080"], {})
    assert "unknown flag --micro-adress" in info.value.detail
    assert "--micro-address" in info.value.detail


def test_reads_the_process_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MICRO_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr("sys.argv", ["svc", "--micro-grace-period=3s"])
    monkeypatch.setenv("MICRO_VERSION", "9")
    assert service_options() == {"grace_period": 3.0, "version": "9"}


def test_every_option_has_a_conversion_and_a_description() -> None:
    for name, (convert, what) in SERVICE_OPTIONS.items():
        assert callable(convert) and what, name
        assert name == name.lower() and "-" not in name
