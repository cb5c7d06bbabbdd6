"""Developer sessions: ``nox -s tests lint typecheck docs compiled bench``."""

import os
import shutil
from pathlib import Path

import nox

# mDNS from developer sessions stays on this machine.
os.environ.setdefault("MICRO_MDNS_INTERFACES", "127.0.0.1")

nox.options.sessions = ["tests", "lint", "typecheck"]

#: where ``nox -s compiled`` unpacks the compiled build, for the benchmarks
COMPILED_DIR = Path(__file__).parent / "build" / "compiled"


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "micro", "tests", "examples", "benchmarks")
    session.run("ruff", "format", "--check", "micro", "tests", "examples", "benchmarks")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy")
    session.run("mypy")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site, built as CI builds it; its code blocks are run by tests/docs."""
    session.install("-e", ".[docs]")
    args = session.posargs or ["--site-dir", ".nox/site"]
    session.run("mkdocs", "build", "--strict", *args, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python="3.11")
def compiled(session: nox.Session) -> None:
    """The optional compiled (mypyc) HTTP/2 core: build its wheel, run tests/unit/transport on it.

    The wheel is built from the sdist (``python -m build``), so no compiled module is left in
    the checkout to shadow the sources. It is also unpacked into build/compiled, the path the
    benchmarks' micro-compiled-* systems import micro from.
    """
    session.install("build")
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run(
        "python", "-m", "build", "--outdir", str(dist), env={"HATCH_BUILD_HOOK_ENABLE_MYPYC": "1"}
    )
    (wheel,) = dist.glob("*.whl")
    shutil.rmtree(COMPILED_DIR, ignore_errors=True)
    session.run("pip", "install", "--quiet", "--no-deps", "--target", str(COMPILED_DIR), str(wheel))
    session.install(str(wheel), "pytest>=8", "hypothesis>=6")
    # The installed wheel, not the checkout, is imported: the checkout goes last on the path.
    args = session.posargs or ["tests/unit/transport"]
    session.run("pytest", "--import-mode=append", *args, env={"MICRO_EXPECT_COMPILED": "1"})


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/run.py", *session.posargs)
