"""Mutation testing of the runtime (issue 14): sessions, instances, futures and TaskControl.

The tests that exercise ``taskloom/runtime/``, and the mutants no test can tell apart from the original,
each with the reason. Merged into ``tests/mutate.py``. Run one module at a time:

    .venv/bin/python tests/mutate.py taskloom/runtime/future.py --jobs 1
"""

from __future__ import annotations

_RUNTIME_TESTS = [
    "tests/unit/test_session.py",
    "tests/unit/test_future.py",
    "tests/unit/test_instances.py",
    "tests/unit/test_control.py",
    "tests/unit/test_mutants_runtime_future.py",
    "tests/unit/test_mutants_runtime_session.py",
    "tests/unit/test_mutants_runtime_instance.py",
    "tests/unit/test_mutants_runtime_control.py",
]

#: module path prefix -> the test files that exercise it (tried before tests/mutate.py's own map)
TESTS: dict[str, list[str]] = {
    "taskloom/runtime/future.py": _RUNTIME_TESTS,
    "taskloom/runtime/session.py": _RUNTIME_TESTS,
    "taskloom/runtime/instance.py": _RUNTIME_TESTS,
    "taskloom/runtime/control.py": _RUNTIME_TESTS,
    "taskloom/runtime/": _RUNTIME_TESTS,
}

#: mutmut's mutant name -> (the mutated line, stripped, as ``mutmut show`` prints it after "+", the reason)
EQUIVALENT: dict[str, tuple[str, str]] = {}

#: mutants that differ only in a situation the tests cannot create (same format as EQUIVALENT)
UNREACHABLE: dict[str, tuple[str, str]] = {}
