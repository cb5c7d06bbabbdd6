"""The documentation's code is code (the site's pages and the README): every Python
block compiles and its imports resolve, the self-contained ones run and print what the
page says they print, and the quickstart serves the calls its page shows, on asyncio and
on Trio.

A page marks a block with an HTML comment on the line before its fence (invisible in
the rendered site):

- ``<!-- test: run -->``: a complete program, run in a fresh interpreter on the test's
  backend (``anyio.run`` defaults to it) and expected to exit 0;
- ``<!-- test: output -->``: on the block after a ``run`` block, the exact standard output
  of that program;
- ``<!-- test: quickstart -->``: the hello-world server, whose ``console`` block of curl
  calls that follows is replayed against it, answer by answer.

``--8<-- "path"`` lines (pymdownx.snippets) are replaced by the file they name, as the
site does, so an included example is checked here too.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import anyio
import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^\s`]*)(?P<rest>.*)$")
MARKER = re.compile(r"^\s*<!--\s*test:\s*(?P<mark>[a-z]+)\s*-->\s*$")
SNIPPET = re.compile(r"""^(?P<indent>\s*)--8<--\s+["'](?P<path>[^"':]+)["']\s*$""")
# A program the docs run gets this long, start-up included.
RUN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    code: str
    mark: str | None
    #: folders of the files included with ``--8<--``: their sibling modules
    folders: tuple[Path, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _expand_snippets(code: str) -> tuple[str, tuple[Path, ...]]:
    lines = []
    folders = []
    for line in code.splitlines():
        m = SNIPPET.match(line)
        if m is None:
            lines.append(line)
            continue
        path = ROOT / m["path"]
        folders.append(path.parent)
        lines.extend(m["indent"] + text for text in path.read_text().splitlines())
    return "\n".join(lines) + "\n", tuple(folders)


def parse_blocks(page: Path) -> list[Block]:
    """Every fenced block of a page, with the marker on the line before it, if any."""
    blocks: list[Block] = []
    lines = page.read_text().splitlines()
    name = page.relative_to(DOCS if page.is_relative_to(DOCS) else ROOT).as_posix()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        mark_match = MARKER.match(lines[i - 1]) if i > 0 else None
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:])
            i += 1
        i += 1
        code, folders = _expand_snippets("\n".join(body))
        blocks.append(
            Block(
                page=name,
                line=start + 1,
                language=m["info"].lower(),
                code=code,
                mark=mark_match["mark"] if mark_match else None,
                folders=folders,
            )
        )
    return blocks


# The README opens with the quickstart too: it is checked as the site's pages are.
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
BLOCKS = [block for page in PAGES for block in parse_blocks(page)]
PYTHON = [b for b in BLOCKS if b.language in ("python", "py", "python3")]
RUNNABLE = [b for b in PYTHON if b.mark == "run"]


def _expected_output(block: Block) -> str | None:
    blocks = [b for b in BLOCKS if b.page == block.page]
    after = blocks[blocks.index(block) + 1 :]
    if after and after[0].mark == "output":
        return after[0].code
    return None


def _resolve_sibling(path: Path, names: list[str]) -> list[str]:
    """Names missing from an example's own module, read without running it."""
    defined: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return [f"{path.stem}.{name}" for name in names if name not in defined]


def _resolve_import(module: str, names: list[str], folders: tuple[Path, ...] = ()) -> list[str]:
    """The names in ``from module import names`` (or the module itself) that do not exist."""
    # An included example's sibling module (examples/x/common.py) is read, not imported:
    # importing it may have side effects such as generating code.
    for folder in folders:
        sibling = folder / f"{module}.py"
        if "." not in module and sibling.exists():
            return _resolve_sibling(sibling, names)
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return [f"{module} ({exc})"]
    missing = []
    for name in names:
        if name == "*" or hasattr(mod, name):
            continue
        try:
            importlib.import_module(f"{module}.{name}")
        except ImportError:
            missing.append(f"{module}.{name}")
    return missing


def _attribute_chain(node: ast.Attribute) -> list[str] | None:
    parts: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.Attribute):
        parts.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        return None
    parts.append(current.id)
    return parts[::-1]


def _missing_micro_attributes(tree: ast.AST, modules: dict[str, ModuleType]) -> list[str]:
    """``micro.X.Y`` written in a block that the package does not have."""
    missing = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain = _attribute_chain(node)
        if chain is None or chain[0] not in modules:
            continue
        obj: object = modules[chain[0]]
        for i, part in enumerate(chain[1:], start=1):
            if not isinstance(obj, ModuleType):
                break  # an attribute of a class or value: not ours to check statically
            if not hasattr(obj, part):
                try:
                    obj = importlib.import_module(f"{obj.__name__}.{part}")
                    continue
                except ImportError:
                    missing.append(".".join(chain[: i + 1]))
                    break
            obj = getattr(obj, part)
    return missing


def test_the_docs_have_python_to_check() -> None:
    assert len(PYTHON) >= 30
    assert len(RUNNABLE) >= 10
    assert any(b.mark == "quickstart" for b in PYTHON)


def test_markers_are_known_and_outputs_follow_programs() -> None:
    for block in BLOCKS:
        assert block.mark in (None, "run", "output", "quickstart"), block.id
        if block.mark == "output":
            blocks = [b for b in BLOCKS if b.page == block.page]
            before = blocks[blocks.index(block) - 1]
            assert before.mark == "run", f"{block.id}: an output block follows a program"


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_compiles_and_its_imports_resolve(block: Block) -> None:
    # Fragments may await at top level: they stand for the body of an async function.
    compile(block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    tree = ast.parse(block.code, block.id)
    missing: list[str] = []
    modules: dict[str, ModuleType] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                missing += _resolve_import(alias.name, [], block.folders)
                if alias.name.split(".")[0] == "micro" and not missing:
                    top = alias.asname or alias.name.split(".")[0]
                    modules[top] = importlib.import_module(
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            missing += _resolve_import(node.module, [a.name for a in node.names], block.folders)
    # Fragments that use micro without importing it still name real things.
    modules.setdefault("micro", importlib.import_module("micro"))
    missing += _missing_micro_attributes(tree, modules)
    assert not missing, f"{block.id}: {missing}"


DATA = [b for b in BLOCKS if b.language in ("json", "yaml", "toml")]


@pytest.mark.parametrize("block", DATA, ids=[b.id for b in DATA])
def test_json_yaml_and_toml_blocks_parse(block: Block) -> None:
    if block.language == "json":
        json.loads(block.code)
    elif block.language == "toml":
        tomllib.loads(block.code)
    else:
        assert list(yaml.safe_load_all(block.code)), block.id


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Runs a page's program with anyio.run defaulting to the test's backend.
RUNNER = """
import functools, runpy, sys
import anyio
anyio.run = functools.partial(anyio.run, backend=sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # A program that does not name its backends keeps to this machine and this run.
    env.setdefault("MICRO_STORE", "memory")
    env["MICRO_MDNS_INTERFACES"] = "127.0.0.1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
async def test_program_runs_and_prints_what_the_page_says(
    block: Block, anyio_backend: str, tmp_path: Path
) -> None:
    program = tmp_path / "program.py"
    program.write_text(block.code)
    with anyio.fail_after(RUN_TIMEOUT):
        result = await anyio.run_process(
            [sys.executable, "-c", RUNNER, anyio_backend, str(program)],
            cwd=tmp_path,
            env=_environment(),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, f"{block.id} exited {result.returncode}:\n{stderr[-3000:]}"
    expected = _expected_output(block)
    if expected is not None:
        assert stdout.strip().splitlines() == expected.strip().splitlines(), stderr[-3000:]


def _console_calls(page: str, after: Block) -> list[tuple[str, str]]:
    """The ``$ curl ...`` lines of the console block after ``after``, with their answers."""
    blocks = [b for b in BLOCKS if b.page == page]
    console = next(b for b in blocks[blocks.index(after) + 1 :] if b.language == "console")
    calls: list[tuple[str, str]] = []
    for line in console.code.splitlines():
        if line.startswith("$ "):
            calls.append((line[2:], ""))
        elif calls:
            command, answer = calls[-1]
            calls[-1] = (command, answer + line + "\n")
    return calls


QUICKSTART = [b for b in PYTHON if b.mark == "quickstart"]


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.parametrize("block", QUICKSTART, ids=[b.id for b in QUICKSTART])
async def test_quickstart_answers_its_curl_calls(
    block: Block, anyio_backend: str, tmp_path: Path
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        if os.environ.get("MICRO_REQUIRE_BACKENDS") == "1":
            pytest.fail("curl is not installed; MICRO_REQUIRE_BACKENDS=1 requires it")
        pytest.skip("curl is not installed")
    port = _free_port()
    code = block.code.replace('":8080"', f'"127.0.0.1:{port}"')
    assert code != block.code, "the quickstart listens on :8080"
    if anyio_backend == "trio":
        # What the quickstart's own comment offers.
        assert "# or trio.run(service.serve)" in code
        code = code.replace("anyio.run(service.serve)", "import trio; trio.run(service.serve)")
    program = tmp_path / "main.py"
    program.write_text(code)
    env = _environment()
    env["MICRO_REGISTRY"] = "memory"
    log = (tmp_path / "stderr.txt").open("wb")
    process = await anyio.open_process(
        [sys.executable, str(program)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        with anyio.fail_after(RUN_TIMEOUT):
            async with httpx.AsyncClient() as http:
                while True:
                    try:
                        await http.get(f"http://127.0.0.1:{port}/health")
                        break
                    except httpx.TransportError:
                        assert process.returncode is None, (tmp_path / "stderr.txt").read_text()
                        await anyio.sleep(0.05)
            calls = _console_calls(block.page, block)
            assert len(calls) >= 3
            for command, answer in calls:
                argv = shlex.split(command.replace("localhost:8080", f"127.0.0.1:{port}"))
                assert argv[0] == "curl"
                result = await anyio.run_process([curl, "-sS", *argv[1:]], check=False)
                assert result.returncode == 0, result.stderr.decode()
                assert json.loads(result.stdout) == json.loads(answer), command
        # Ctrl-C stops it, gracefully.
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(RUN_TIMEOUT):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
        await process.aclose()
        log.close()
