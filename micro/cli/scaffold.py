"""``micro new NAME``: a runnable service with its handler, types, tests and README."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

import typer

from ._app import EXIT_USAGE, app, fail

__all__ = ["new", "scaffold"]

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*([-_.][A-Za-z0-9]+)*$")

FILES: dict[str, str] = {
    "main.py": '''\
"""$name: a micro service.

    python main.py                       # asyncio
    python main.py --backend trio        # the same on Trio
    micro run .                          # restart on code changes
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import anyio

import micro
from handler import $handler


def new_service(**options: Any) -> micro.Service:
    """The service; options (address, registry, ...) override MICRO_* variables."""
    service = micro.Service("$name", **options)
    service.handle($handler())
    return service


def main() -> None:
    parser = argparse.ArgumentParser(description="the $name service")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args, _ = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    anyio.run(new_service().serve, backend=args.backend)


if __name__ == "__main__":
    main()
''',
    "messages.py": '''\
"""What the $name service's endpoints take and return."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CallRequest:
    name: str


@dataclass
class CallResponse:
    message: str


@dataclass
class StreamRequest:
    count: int


@dataclass
class StreamResponse:
    count: int
''',
    "handler.py": '''\
"""The $name service's endpoints: $handler.Call and $handler.Stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from messages import CallRequest, CallResponse, StreamRequest, StreamResponse


class $handler:
    async def call(self, req: CallRequest) -> CallResponse:
        return CallResponse(message=f"Hello {req.name}")

    async def stream(self, req: StreamRequest) -> AsyncIterator[StreamResponse]:
        for i in range(req.count):
            yield StreamResponse(count=i)
''',
    "tests/test_$module.py": '''\
"""The $name service, called over real sockets on 127.0.0.1 on asyncio and Trio."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

import pytest

import micro
from handler import $handler
from main import new_service
from messages import CallRequest, CallResponse, StreamRequest, StreamResponse
from micro.registry import MemoryRegistry

BACKENDS = ["asyncio"] + (["trio"] if importlib.util.find_spec("trio") else [])

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client() -> AsyncIterator[micro.Client]:
    registry = MemoryRegistry()
    service = new_service(address="127.0.0.1:0", registry=registry, store="memory")
    async with service.running():
        async with micro.Client(registry=registry) as client:
            yield client


async def test_handler() -> None:
    assert await $handler().call(CallRequest("alice")) == CallResponse("Hello alice")


async def test_call(client: micro.Client) -> None:
    resp = await client.call("$name", "$handler.Call", CallRequest("bob"), CallResponse)
    assert resp == CallResponse("Hello bob")


async def test_stream(client: micro.Client) -> None:
    async with client.stream(
        "$name", "$handler.Stream", StreamRequest(3), StreamResponse
    ) as stream:
        assert [r.count async for r in stream] == [0, 1, 2]
''',
    "pyproject.toml": """\
[project]
name = "$name"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["micro-runtime"]

[project.optional-dependencies]
test = ["pytest", "anyio"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
""",
    "README.md": """\
# $name

A micro service with two endpoints:

- `$handler.Call` takes `{"name": "alice"}` and answers `{"message": "Hello alice"}`;
- `$handler.Stream` takes `{"count": 3}` and streams `{"count": 0}`, `{"count": 1}`, `{"count": 2}`.

Run it, restarting on code changes, and call it:

```sh
micro run .
micro call $name $handler.Call '{"name": "alice"}'
echo '{"count": 3}' | micro stream $name $handler.Stream
```

`MICRO_ADDRESS=:8080` picks the port (any free one by default); `MICRO_REGISTRY`,
`MICRO_BROKER` and the other `MICRO_*` variables choose the backends. With a fixed port,
curl works too:

```sh
curl -XPOST -H 'Content-Type: application/json' -d '{"name": "alice"}' \\
     http://localhost:8080/$handler/Call
```

Test it (on asyncio, and on Trio when it is installed):

```sh
python -m pytest
```

The endpoints are in `handler.py`, their request and response types in `messages.py`,
and `main.py` builds and runs the service.
""",
}


def scaffold(name: str, directory: Path) -> list[Path]:
    """Write a new service called ``name`` into ``directory``; returns the files written.

    Raises ValueError for a name that is not a service name, FileExistsError
    when ``directory`` exists and is not empty.
    """
    if not NAME.match(name):
        raise ValueError(
            f"{name!r} is not a service name: letters and digits, "
            "words joined by '-', '_' or '.', starting with a letter"
        )
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty")
    words = re.split(r"[-_.]", name)
    values = {
        "name": name,
        "handler": "".join(w[:1].upper() + w[1:] for w in words),
        "module": "_".join(w.lower() for w in words),
    }
    written = []
    for template, text in FILES.items():
        path = directory / Template(template).substitute(values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values))
        written.append(path)
    return written


@app.command()
def new(
    name: str = typer.Argument(..., help="service name"),
    directory: Path | None = typer.Option(None, "--dir", help="where (default ./NAME)"),
) -> None:
    """Create a new service: handler, types, tests and README, ready to run."""
    target = directory if directory is not None else Path(name)
    try:
        files = scaffold(name, target)
    except (ValueError, FileExistsError) as exc:
        fail(str(exc), EXIT_USAGE)
    for path in files:
        print(path)
