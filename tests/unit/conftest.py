"""Fixtures of the unit tests: every test runs against its own, empty store, SQLite and PostgreSQL.

The store is the default one, chosen by ``TASKLOOM_DATABASE_URL`` (as in user code), so workflow tests
never construct a store themselves. Every test of a module that uses the store runs twice, ``[sqlite]``
and ``[postgres]`` (the ``store_kind`` and ``store_url`` fixtures of ``tests/conftest.py``).

The modules in :data:`STORELESS_MODULES` test in-memory behaviour (option validation, direct task calls,
instances in this process) or SQLite files on purpose; their tests run once, on SQLite, and fail if they
open the default store after all: such a test belongs in a store module, or carries ``@pytest.mark.store``
to run on both stores where it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskloom.store import stores

#: variables that would make a test depend on the developer's environment
_FOREIGN_SETTINGS = ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY")

#: Modules whose tests never open the default store, so running them on PostgreSQL too would prove nothing.
STORELESS_MODULES = frozenset(
    {
        "test_control.py",
        "test_future.py",
        "test_instances.py",
        "test_layers.py",  # reads source files
        "test_mutants_runtime_control.py",
        "test_mutants_runtime_future.py",
        "test_mutants_runtime_instance.py",
        "test_mutants_runtime_session.py",
        "test_mutants_worker.py",  # its own SQLite stores; its one default-store test is marked store
        "test_options.py",
        "test_signatures.py",
        "test_plain_values.py",
        "test_port_numerous.py",
        "test_port_task_surface.py",  # its one workflow test is marked store
        "test_outputs.py",  # output storage is files and inline values, not the store
        "test_secret_store.py",  # constructs SQLiteStore itself and reads the raw database file
        "test_session.py",
        "test_settings.py",
        "test_task_direct.py",
    }
)

STORE_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "store: run this test on every store even in a storeless module")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test runs on both stores unless its module is storeless (and the test not marked ``store``)."""
    storeless = Path(metafunc.module.__file__ or "").name in STORELESS_MODULES
    if not storeless or metafunc.definition.get_closest_marker("store") is not None:
        metafunc.parametrize("store_kind", STORE_KINDS, indirect=True)


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    """``"sqlite"``, or the store this test was parametrised with (see :func:`pytest_generate_tests`)."""
    kind: str = getattr(request, "param", "sqlite")
    return kind


@pytest.fixture(autouse=True)
def isolated_store(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh store as the default store (SQLite in ``tmp_path``, or a PostgreSQL schema of its own), and
    ``tmp_path`` as taskloom's home.

    Yields the store's URL; a SQLite file appears when something first uses the store (``default_store()``).
    """
    monkeypatch.setenv("TASKLOOM_DATABASE_URL", store_url)
    monkeypatch.setenv("TASKLOOM_HOME", str(tmp_path))
    for name in _FOREIGN_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    stores.clear()
    yield store_url
    stores.clear()
    callspec = getattr(request.node, "callspec", None)
    parametrised = callspec is not None and "store_kind" in callspec.params
    if not parametrised and Path(store_url.removeprefix("sqlite:///")).exists():
        pytest.fail(
            f"{request.node.nodeid} opened the default store, but its module is in STORELESS_MODULES "
            "(tests/unit/conftest.py), so it ran on SQLite only; mark it @pytest.mark.store to run it on "
            "PostgreSQL too",
            pytrace=False,
        )
