"""Fixtures of the fault-injection tests: a scene on a fresh SQLite store or PostgreSQL schema.

The test process itself uses the same store (``TASKLOOM_DATABASE_URL``) so that ``wf.create()`` and
``wf.status()`` work here too; every process the scene started is killed at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from faultkit import Scene, build_scene, end_scene


@pytest.fixture
def sqlite_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    """A scene on a SQLite file of its own."""
    scene = build_scene(f"sqlite:///{tmp_path / 'taskloom.db'}", tmp_path, monkeypatch)
    yield scene
    end_scene(scene)


@pytest.fixture
def scene(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    """A scene on this test's ``store_kind``: the test runs once on SQLite, once on PostgreSQL."""
    scene = build_scene(store_url, tmp_path, monkeypatch)
    yield scene
    end_scene(scene)
