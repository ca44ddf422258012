"""Mutation testing of the stores (issue 14): the tests that exercise each store module, and the mutants
no test can tell apart from the original, each with the reason. Merged into ``tests/mutate.py``."""

from __future__ import annotations

_STORE_TESTS = [
    "tests/store/test_store_contract.py",
    "tests/store/test_store_faults.py",
    "tests/store/test_instance_workers.py",
]

#: module path prefix -> the test files that exercise it (tried before tests/mutate.py's own map)
TESTS: dict[str, list[str]] = {
    "taskloom/store/sqlite.py": [*_STORE_TESTS],
    "taskloom/store/faults.py": [*_STORE_TESTS],
    "taskloom/store/base.py": [*_STORE_TESTS],
    "taskloom/store/instances.py": [*_STORE_TESTS],
    "taskloom/store/postgres.py": [*_STORE_TESTS],
}

#: mutmut's mutant name -> (the mutated line, stripped, as ``mutmut show`` prints it after "+", the reason)
EQUIVALENT: dict[str, tuple[str, str]] = {}
