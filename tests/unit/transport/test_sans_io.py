"""The wire core in micro.transport never touches an event loop or a socket.

``framing``, ``timeouts``, ``headers``, ``calls``, ``lines`` and ``h2conn`` are sans-IO:
bytes and header lists in, values and events out. Two checks keep them so:

* their source, and the source of every micro module they import, has no
  ``import`` of an event loop or socket module (found with :mod:`ast`, so an
  import hidden inside a function counts too);
* importing and using them in a fresh interpreter loads none of those modules,
  third-party imports included.

Importing ``micro.transport.framing`` normally runs ``micro/__init__.py`` first,
which imports the service runtime (and so anyio) on purpose. The runtime check
therefore stands a bare package in for ``micro`` so that only the wire core
and what it imports are loaded; the package's own ``__init__`` is not part of
the wire core.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import micro

PACKAGE_DIR = Path(micro.__file__).parent
SANS_IO = ["framing", "timeouts", "headers", "calls", "h2conn", "lines", "http2", "hpack"]
FORBIDDEN = {"anyio", "trio", "asyncio", "socket", "selectors", "ssl", "sniffio"}


def module_path(name: str) -> Path:
    """The source file of ``micro.<dotted>`` (a module or a package's __init__)."""
    base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imports_of(name: str) -> tuple[set[str], set[str]]:
    """(top-level names of outside modules, micro modules) imported anywhere in ``name``."""
    path = module_path(name)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    outside: set[str] = set()
    inside: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                (inside if alias.name.split(".")[0] == "micro" else outside).add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "micro":
                outside.add(target)
                continue
            inside.add(target)
            for alias in node.names:  # "from . import _json" names a module
                candidate = f"{target}.{alias.name}"
                if module_path(candidate).exists():
                    inside.add(candidate)
    return {n.split(".")[0] for n in outside}, inside


def closure(roots: list[str]) -> dict[str, set[str]]:
    """Outside imports of each micro module reachable from ``roots`` (``micro`` itself excluded)."""
    seen: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen or name == "micro":
            continue
        outside, inside = imports_of(name)
        seen[name] = outside
        todo.extend(inside)
    return seen


@pytest.mark.parametrize("module", SANS_IO)
def test_module_source_imports_no_event_loop_or_socket(module: str) -> None:
    outside, _ = imports_of(f"micro.transport.{module}")
    assert outside.isdisjoint(FORBIDDEN), sorted(outside & FORBIDDEN)


def test_micro_modules_reached_import_no_event_loop_or_socket() -> None:
    reached = closure(["micro.transport", *(f"micro.transport.{m}" for m in SANS_IO)])
    assert "micro.errors" in reached
    assert "micro.codec.base" in reached
    assert "micro.codec._json" in reached  # loaded lazily, still checked
    bad = {name: sorted(found & FORBIDDEN) for name, found in reached.items() if found & FORBIDDEN}
    assert not bad


def test_the_check_sees_imports() -> None:
    # The checker itself: a module known to use anyio is reported.
    outside, _ = imports_of("micro.transport.h2_server")
    assert "anyio" in outside


RUNTIME_CHECK = """
import importlib, json, sys, types

package = types.ModuleType("micro")
package.__path__ = [sys.argv[1]]
sys.modules["micro"] = package

for name in sys.argv[2].split(","):
    importlib.import_module("micro.transport." + name)

# Use them too, so lazily imported parts (the codecs) are loaded.
from micro.transport import calls, framing, h2conn, timeouts

head = calls.parse_request_head(
    "POST", "/A/B", [("content-type", "application/grpc+json"), ("grpc-timeout", "1S")]
)
head.codec.decode(framing.MessageDecoder(100).feed(framing.encode_message(b"{}"))[0], dict)
for name in ("msgpack", "proto", "bytes"):
    calls.parse_content_type("application/grpc+" + name)
timeouts.format_grpc_timeout(1.5)
conn = h2conn.new_connection(client_side=True, kind="h2")
h2conn.start(conn)
conn.data_to_send()
print(json.dumps(sorted(sys.modules)))
"""


def test_wire_core_loads_no_event_loop_or_socket_at_runtime() -> None:
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_CHECK, str(PACKAGE_DIR), ",".join(SANS_IO)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    loaded = set(json.loads(result.stdout))
    assert {f"micro.transport.{m}" for m in SANS_IO} <= loaded
    assert not {n for n in loaded if n.split(".")[0] in FORBIDDEN}
