"""Queue tests: ``default`` makes the test's store (SQLite or PostgreSQL) the default one; ``env`` is the
environment of ``taskloom worker queueapp`` processes on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from schedules.conftest import default

HERE = Path(__file__).parent

__all__ = ["default", "env"]


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    """The workers' (and the CLI's) environment: this test's store, its home, and queueapp importable."""
    clean = {k: v for k, v in os.environ.items() if k not in ("TASKLOOM_SERVER_URL", "TASKLOOM_START")}
    return {
        **clean,
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
