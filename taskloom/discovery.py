"""Finding user code: import modules by name and collect the workflows defined at their top level.

Workers, the server and ``taskloom recover`` import user code by module name (never code sent over the
network) and look up workflows by their names, the names recorded with each execution.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

from taskloom.errors import WorkflowError
from taskloom.workflow import Workflow


def find_workflows(modules: Iterable[ModuleType]) -> dict[str, Workflow[Any]]:
    """Every @workflow defined at the top level of ``modules``, by name."""
    found: dict[str, Workflow[Any]] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Workflow):
                other = found.get(value.name)
                if other is not None and other is not value:
                    raise WorkflowError(
                        f"two workflows are named {value.name!r} ({other.target} and {value.target}); "
                        "give one a different name with @workflow.with_options(name=...)"
                    )
                found[value.name] = value
    return found


def import_modules(names: Sequence[str]) -> list[ModuleType]:
    """Import ``names``, with the working directory importable (as ``python -m`` has it)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise WorkflowError(f"cannot import module {name!r}: {error}") from None
    return modules
