"""The public face: ``micro.__all__`` matches what the package offers."""

import dataclasses
import types
import typing

import pytest

import micro


def test_all_is_sorted_and_unique() -> None:
    assert micro.__all__ == sorted(micro.__all__)
    assert len(set(micro.__all__)) == len(micro.__all__)


@pytest.mark.parametrize("name", micro.__all__)
def test_every_name_in_all_exists(name: str) -> None:
    assert getattr(micro, name, None) is not None


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from micro import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(micro.__all__)


def test_every_public_non_module_name_is_in_all() -> None:
    # Submodules become attributes when imported; they are namespaces, not the face.
    public = {
        name
        for name, value in vars(micro).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(micro.__all__)


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in micro.__all__
        if isinstance(getattr(micro, n), type) and not dataclasses.is_dataclass(getattr(micro, n))
    ],
)
def test_public_classes_report_the_public_module(name: str) -> None:
    assert getattr(micro, name).__module__ == "micro"


@pytest.mark.parametrize(
    "name", [n for n in micro.__all__ if dataclasses.is_dataclass(getattr(micro, n))]
)
def test_public_dataclasses_keep_resolvable_annotations(name: str) -> None:
    # Their string annotations resolve in their home module, so they stay there.
    assert typing.get_type_hints(getattr(micro, name))


@pytest.mark.parametrize(
    "name", [n for n in micro.__all__ if isinstance(getattr(micro, n), types.FunctionType)]
)
def test_public_functions_report_the_public_module(name: str) -> None:
    assert getattr(micro, name).__module__ == "micro"


def test_the_face_has_the_core_names() -> None:
    for name in ("Service", "Client", "MicroError", "endpoint", "context"):
        assert name in micro.__all__


def test_context_is_the_module() -> None:
    assert isinstance(micro.context, types.ModuleType)
    assert micro.context.__name__ == "micro.context"


def test_version() -> None:
    assert isinstance(micro.__version__, str)
    assert micro.__version__.count(".") >= 1
