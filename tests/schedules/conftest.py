"""Schedule tests: the test's store (SQLite or PostgreSQL, ``store_url``) as the default store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskloom.store import Store, default_store, stores


@pytest.fixture
def default(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The test's fresh store, as the one ``wf.schedule``, ``wf.run`` and the CLI open."""
    monkeypatch.setenv("TASKLOOM_DATABASE_URL", store_url)
    monkeypatch.setenv("TASKLOOM_HOME", str(tmp_path))
    for name in ("TASKLOOM_SERVER_URL", "TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_START"):
        monkeypatch.delenv(name, raising=False)
    stores.clear()
    yield default_store()
    stores.clear()
