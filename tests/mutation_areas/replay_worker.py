"""Mutation testing of taskloom/replay.py and taskloom/worker.py (issue 14): their tests and equivalent mutants.

Merged into ``tests/mutate.py`` (see its ``TESTS`` and ``EQUIVALENT`` for the format).

The replay key is ``taskloom/replay`` rather than ``taskloom/replay.py``: ``tests/mutate.py`` merges areas
with ``{**area, **TESTS}``, so an area key equal to one of its own keeps *its* list; a shorter prefix is
tried first and matches only ``taskloom/replay.py``.
"""

from __future__ import annotations

TESTS: dict[str, list[str]] = {
    "taskloom/replay": [
        "tests/unit/test_mutants_replay.py",
        "tests/unit/test_replay.py",
        "tests/unit/test_ownership.py",
        "tests/unit/test_workflow.py",
        "tests/unit/test_builtins.py",
        "tests/unit/test_strength_tasks.py",
    ],
    "taskloom/worker.py": ["tests/unit/test_mutants_worker.py"],
}

#: mutmut's name -> (the mutated line, stripped, as ``mutmut show`` prints it after "+", why no test can
#: tell it from the original)
EQUIVALENT: dict[str, tuple[str, str]] = {}
