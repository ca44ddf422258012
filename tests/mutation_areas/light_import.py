"""Mutation testing of what keeps a run's import light (issue 12's one-step process): taskloom/signatures.py,
taskloom/typing_free.py and taskloom/plain_values.py.

Merged into ``tests/mutate.py`` (see its ``TESTS``, ``EQUIVALENT`` and ``UNREACHABLE`` for the format).
"""

from __future__ import annotations

TESTS: dict[str, list[str]] = {
    "taskloom/signatures.py": ["tests/unit/test_signatures.py", "tests/unit/test_port_task_surface.py"],
    "taskloom/typing_free.py": ["tests/unit/test_signatures.py", "tests/unit/test_outputs.py"],
    "taskloom/plain_values.py": [
        "tests/unit/test_plain_values.py",
        "tests/unit/test_serde.py",
        "tests/unit/test_masking.py",
        "tests/unit/test_task_cache.py",
    ],
}
