"""Fixtures of the unit tests: every test runs against its own, empty store.

The store is the default one, chosen by ``TASKLOOM_DATABASE_URL`` (as in user code), so workflow tests
never construct a store themselves and the same tests can later run against PostgreSQL by changing the
URL this fixture sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskloom.store import stores

#: variables that would make a test depend on the developer's environment
_FOREIGN_SETTINGS = ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY")


@pytest.fixture(autouse=True)
def isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite store in ``tmp_path`` as the default store, and ``tmp_path`` as taskloom's home.

    Yields the store's URL; the file appears when something first uses the store (``default_store()``).
    """
    url = f"sqlite:///{tmp_path / 't.db'}"
    monkeypatch.setenv("TASKLOOM_DATABASE_URL", url)
    monkeypatch.setenv("TASKLOOM_HOME", str(tmp_path))
    for name in _FOREIGN_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    stores.clear()
    yield url
    stores.clear()
