"""Numerous's ``TaskConfig``: a task's definition as ``t.config`` shows it.

Defined apart from :mod:`taskloom.task` (which still offers ``TaskConfig``) and loaded on first use:
every run imports ``taskloom.task``, few ask for ``t.config``, and a dataclass costs its module's import
noticeably (tests/perf/test_import.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaskConfig:
    """Numerous's view of a task's definition: ``t.config.max_parallel`` and friends.

    ``name`` is the task's name as it runs (the ``name`` option, else the function's name). A read-only
    snapshot: change options with ``t.with_options(...)``.
    """

    max_parallel: int = 1
    size: str = "small"
    name: str | None = None
