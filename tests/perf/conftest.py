"""Group-commit tests: ``default`` (the schedule tests' fixture, one definition) makes the test's store,
SQLite or PostgreSQL, the default one; a test asking for it runs on both stores."""

from __future__ import annotations

from schedules.conftest import default

__all__ = ["default"]
