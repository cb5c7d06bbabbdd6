"""The optional compiled (mypyc) build of the sans-IO HTTP/2 core: which one is in use.

``nox -s compiled`` builds it and runs this folder against it with ``MICRO_EXPECT_COMPILED=1``,
so the same tests cover both builds and this one fails if the pure modules were picked up.
"""

import os
from importlib.machinery import EXTENSION_SUFFIXES

import pytest

import micro.transport
from micro.transport import hpack, http2


def test_compiled_says_which_build_is_in_use() -> None:
    files = [module.__file__ or "" for module in (hpack, http2)]
    assert micro.transport.compiled == all(f.endswith(tuple(EXTENSION_SUFFIXES)) for f in files)
    assert micro.transport.compiled or all(f.endswith(".py") for f in files)


@pytest.mark.skipif(
    os.environ.get("MICRO_EXPECT_COMPILED") != "1", reason="run by nox -s compiled only"
)
def test_the_compiled_build_is_the_one_under_test() -> None:
    assert micro.transport.compiled, (hpack.__file__, http2.__file__)
