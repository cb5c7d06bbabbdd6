"""Developer sessions: ``nox -s tests lint typecheck docs bench``."""

import os

import nox

# mDNS from developer sessions stays on this machine.
os.environ.setdefault("MICRO_MDNS_INTERFACES", "127.0.0.1")

nox.options.sessions = ["tests", "lint", "typecheck"]


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
def bench(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/run.py", *session.posargs)
