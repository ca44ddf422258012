"""Fixtures of the integration tests that run workflows in real subprocesses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskloom.store import stores

HERE = Path(__file__).resolve().parent

#: variables that would make a test depend on the developer's environment
_FOREIGN_SETTINGS = ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY")


@pytest.fixture
def workflow_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """One store for this test, shared by the test process and the subprocesses it starts.

    The test process gets it as its default store (``TASKLOOM_DATABASE_URL``); the returned dict is the
    environment for subprocesses: the same store and home, and ``helpers`` importable.
    """
    settings = {
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}",
        "TASKLOOM_HOME": str(tmp_path),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in _FOREIGN_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    stores.clear()
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_SETTINGS}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    yield env
    stores.clear()
