"""Defaults, environment variables, flags, and the file formats: no I/O but parsing."""

from __future__ import annotations

import pytest

from micro.config import SourceInvalid, cli, defaults, env
from micro.config.formats import format_for, parse

# -- env -------------------------------------------------------------------------


def test_env_maps_double_underscores_to_nested_lowercase_keys() -> None:
    source = env(
        "APP_",
        environ={
            "APP_DATABASE__HOST": "db1",
            "APP_DATABASE__MAX_CONNS": "20",
            "APP_DEBUG": "true",
            "OTHER_DATABASE__HOST": "nope",
            "APPX": "nope",
        },
    )
    assert source.read() == {"database": {"host": "db1", "max_conns": "20"}, "debug": "true"}


def test_env_parses_json_arrays_and_objects_and_keeps_other_text() -> None:
    source = env(
        "APP_",
        environ={
            "APP_HOSTS": '["a", "b"]',
            "APP_LIMITS": '{"rps": 10}',
            "APP_BROKEN": "[not json",
            "APP_CSV": "a,b",
        },
    )
    assert source.read() == {
        "hosts": ["a", "b"],
        "limits": {"rps": 10},
        "broken": "[not json",
        "csv": "a,b",
    }


def test_env_a_section_wins_over_a_value_of_the_same_name() -> None:
    source = env("APP_", environ={"APP_DB__HOST": "h", "APP_DB": "x"})
    assert source.read() == {"db": {"host": "h"}}


def test_env_custom_separator_and_empty_parts() -> None:
    assert env("A_", separator=".", environ={"A_X.Y": "1"}).read() == {"x": {"y": "1"}}
    assert env("APP_", environ={"APP_": "ignored", "APP___X": "1"}).read() == {"x": "1"}


def test_env_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROCFGTEST_FEATURE__ON", "yes")
    assert env("MICROCFGTEST_").read() == {"feature": {"on": "yes"}}
    assert env("MICROCFGTEST_").name == "environment MICROCFGTEST_*"


# -- cli -------------------------------------------------------------------------


def test_cli_maps_dotted_flags_to_nested_keys() -> None:
    source = cli(["--database.host=db1", "--database.port", "5432", "--debug", "--name=x"])
    assert source.read() == {
        "database": {"host": "db1", "port": "5432"},
        "debug": "true",
        "name": "x",
    }


def test_cli_ignores_positionals_short_flags_service_flags_and_what_follows_double_dash() -> None:
    source = cli(
        ["serve", "-v", "--a=1", "--micro-address=:8080", "pos", "--", "--b=2"],
    )
    assert source.read() == {"a": "1"}


def test_cli_later_flags_win_and_values_may_hold_equals_signs() -> None:
    source = cli(["--a=1", "--a=2", "--dsn=postgres://u:p@h/db?x=y"])
    assert source.read() == {"a": "2", "dsn": "postgres://u:p@h/db?x=y"}


def test_cli_bare_flag_before_another_flag_is_true() -> None:
    assert cli(["--verbose", "--level=3"]).read() == {"verbose": "true", "level": "3"}


def test_cli_json_values_and_custom_prefix() -> None:
    assert cli(["--hosts=[1, 2]"]).read() == {"hosts": [1, 2]}
    assert cli(["--app.x=1", "--y=2"], prefix="--app.").read() == {"x": "1"}


def test_cli_reads_sys_argv_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["prog", "--feature.on=1"])
    assert cli().read() == {"feature": {"on": "1"}}


# -- defaults --------------------------------------------------------------------


def test_defaults_are_copied_in_and_out() -> None:
    values = {"db": {"hosts": ["a"]}}
    source = defaults(values)
    values["db"]["hosts"].append("b")
    first = source.read()
    first["db"]["hosts"].append("c")
    assert source.read() == {"db": {"hosts": ["a"]}}


# -- formats ---------------------------------------------------------------------


def test_formats_by_suffix() -> None:
    assert format_for("a/config.yaml") == "yaml"
    assert format_for("config.YML") == "yaml"
    assert format_for("config.json") == "json"
    assert format_for("config.toml") == "toml"
    with pytest.raises(ValueError, match="format="):
        format_for("config.ini")


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("json", '{"db": {"host": "h", "port": 5}, "on": true, "tags": ["a"]}'),
        ("yaml", "db:\n  host: h\n  port: 5\non: true\ntags: [a]\n"),
        ("toml", 'on = true\ntags = ["a"]\n[db]\nhost = "h"\nport = 5\n'),
    ],
)
def test_each_format_gives_the_same_tree(fmt: str, text: str) -> None:
    assert parse(text.encode(), fmt, "c") == {
        "db": {"host": "h", "port": 5},
        "on": True,
        "tags": ["a"],
    }


@pytest.mark.parametrize(
    ("fmt", "text", "place"),
    [
        ("json", '{\n  "a": 1,\n  "b": \n}', "config.json:4:1: "),
        ("yaml", "a: 1\nb: [1, 2\nc: 3\n", "config.yaml:3:"),
        ("yaml", "a: 1\n  b: 2\n", "config.yaml:2:"),
        ("toml", 'a = 1\nb = "unterminated\n', "config.toml:2:"),
    ],
)
def test_errors_name_file_and_line(fmt: str, text: str, place: str) -> None:
    with pytest.raises(SourceInvalid) as info:
        parse(text.encode(), fmt, f"config.{fmt}")
    assert info.value.detail.startswith(place), info.value.detail
    assert len(info.value.detail) > len(place) + 5  # and what the parser said


@pytest.mark.parametrize(("fmt", "text"), [("json", "[1, 2]"), ("yaml", "- a\n- b\n")])
def test_the_top_level_must_be_a_mapping(fmt: str, text: str) -> None:
    with pytest.raises(SourceInvalid, match="top level must be a mapping"):
        parse(text.encode(), fmt, "c")


def test_empty_documents_and_comment_only_yaml_are_empty_configs() -> None:
    assert parse(b"", "json", "c") == {}
    assert parse(b"  \n", "toml", "c") == {}
    assert parse(b"# nothing yet\n", "yaml", "c") == {}


def test_yaml_keys_become_strings() -> None:
    assert parse(b"2: a\ntrue: b\nx: {2: c}\n", "yaml", "c") == {
        "2": "a",
        "true": "b",
        "x": {"2": "c"},
    }


def test_yaml_bools_are_yaml_1_2s_so_no_is_not_false() -> None:
    tree = parse(b"country: NO\non: yes\nflag: true\noff: False\n", "yaml", "c")
    assert tree == {"country": "NO", "on": "yes", "flag": True, "off": False}


def test_not_utf8_is_invalid() -> None:
    with pytest.raises(SourceInvalid, match="not UTF-8"):
        parse(b"a: \xff\xfe\n", "yaml", "c.yaml")
