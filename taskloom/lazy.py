"""Names of a module loaded from another module on first use (PEP 562), so importing the first stays light.

A package's ``__init__`` (``taskloom``, ``taskloom.runtime``) re-exports names whose modules a local
workflow run never needs; ``from package import Name`` and ``package.Name`` work as before, and load the
defining module then (tests/perf/test_import.py checks what ``import taskloom`` loads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def module_getattr(namespace: dict[str, Any], lazy: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that loads ``name`` from the module ``lazy[name]`` names and keeps it in
    ``namespace`` (the module's globals), so the next lookup finds it directly."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib  # on the first lazy name used: the package costs a run's process 1 ms (issue 12)

        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__


def module_dir(namespace: dict[str, Any], names: Iterable[str]) -> Callable[[], list[str]]:
    """A module ``__dir__`` that lists the lazy names with the loaded ones."""
    return lambda: sorted({*namespace, *names})
