"""Development sessions: tests, lint, bench, docs, stress (``nox -s NAME``)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite (server tests skip when a server is absent)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy."""
    session.install("-e", ".[lint,test]")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("mypy", "src")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers, written to docs/performance.md."""
    session.install("-e", ".[bench]")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site in strict mode."""
    session.install("-e", ".[docs,all]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session
def stress(session: nox.Session) -> None:
    """The reliability suite at full count."""
    session.install("-e", ".[test]")
    session.env["FLECHE_STRESS"] = "full"
    session.run(
        "python", "-m", "pytest", "tests/reliability", "-p", "no:cacheprovider", *session.posargs
    )
