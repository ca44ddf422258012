"""Shared fixtures. Store fixtures: every test gets its own store, SQLite or PostgreSQL.

PostgreSQL tests need the server binaries (Debian: ``apt-get install postgresql``). Without them the
PostgreSQL tests skip, except under CI (``CI`` set), where they fail: CI must test both stores.
One throwaway server runs per test session; each test gets a new empty schema on it. Under
``tests/mutate.py`` (a pytest session per mutant) the sessions share the one server it started, named by
``TASKLOOM_TEST_PG_SERVER`` (tests/pgserver.py).
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import SHARED_SERVER_ENV, PostgresServer, attach, find_bindir, running_postgres

from taskloom.store import Store, open_store

_schema_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgres: runs against a real PostgreSQL server (tests/pgserver.py)")


@pytest.fixture(autouse=True)
def _no_event_loop_left_running() -> Iterator[None]:
    """Fail the test that leaves an event loop marked as running in the main thread, and clear it.

    A test interrupted inside ``asyncio.run`` (pytest-timeout's signal, a KeyboardInterrupt at the wrong
    moment) can leave the loop registered as running. Every later ``wf.run()`` in the session would then
    refuse with "called inside a running event loop": hundreds of failures that hide the one cause.
    """
    import asyncio

    before = asyncio.events._get_running_loop()  # Playwright's sync API keeps one running for the session
    yield
    leaked = asyncio.events._get_running_loop()
    if leaked is not None and leaked is not before:
        asyncio.events._set_running_loop(before)
        pytest.fail(f"the test left the event loop {leaked!r} running in the main thread", pytrace=False)


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test session (or the one shared by every session)."""
    shared = os.environ.get(SHARED_SERVER_ENV)
    if shared:
        server = attach(shared)
        yield server
        server.detach()
        return
    bindir = find_bindir()
    if bindir is None:
        reason = (
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb or initdb on PATH); "
            "install them (Debian: apt-get install postgresql) to run the PostgreSQL tests"
        )
        if _on_ci():
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}", pytrace=False)
        pytest.skip(reason)
    with running_postgres(bindir=bindir) as server:
        yield server


@pytest.fixture(scope="session")
def pg_url(pg_server: PostgresServer) -> str:
    """URL of the session's ``taskloom_test`` database (shared by every test that uses it)."""
    return pg_server.url()


@pytest.fixture
def pg_fresh_url(pg_server: PostgresServer) -> Iterator[str]:
    """URL of an empty PostgreSQL store for this test only: its own schema in ``taskloom_test``.

    The schema (and any connection the test left open on it) is gone afterwards. Use
    ``pg_server.create_database`` instead for the rare test that needs a whole database.
    """
    # The random part: a shared server may still hold the schema of a killed session whose pid was reused.
    name = f"test_{os.getpid()}_{next(_schema_numbers)}_{secrets.token_hex(3)}"
    with pg_server.in_use():
        url = pg_server.create_schema(name)
        yield url
        pg_server.drop_schema(name)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_kind(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgres"``: a test using it (or ``store_url``, ``store``) runs once per store."""
    kind: str = request.param
    return kind


@pytest.fixture
def store_url(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a fresh, empty store of this test's ``store_kind``; PostgreSQL starts only when needed."""
    if store_kind == "postgres":
        url: str = request.getfixturevalue("pg_fresh_url")
        return url
    return f"sqlite:///{tmp_path / 'taskloom.db'}"


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A fresh store per test, once with SQLite (in tmp_path) and once with PostgreSQL."""
    opened = open_store(store_url)
    yield opened
    opened.close()
