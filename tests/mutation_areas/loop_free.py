"""Mutation testing of taskloom/loop_free.py (issue 12: a run without an event loop until it needs one).

Merged into ``tests/mutate.py`` (see its ``TESTS``, ``EQUIVALENT`` and ``UNREACHABLE`` for the format).
"""

from __future__ import annotations

TESTS: dict[str, list[str]] = {
    "taskloom/loop_free.py": [
        "tests/unit/test_loop_free.py",
        "tests/unit/test_plain_steps.py",
        "tests/unit/test_workflow.py",
    ],
}
