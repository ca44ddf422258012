"""Mutation testing of taskloom/plain_map.py (issue 12): its excluded mutants.

Merged into ``tests/mutate.py`` (see its ``TESTS``, ``EQUIVALENT`` and ``UNREACHABLE`` for the format); the
module's tests are listed there.
"""

from __future__ import annotations

#: mutmut's name -> (the mutated line, stripped, as ``mutmut show`` prints it after "+", why no test can
#: tell it from the original)
EQUIVALENT: dict[str, tuple[str, str]] = {
    "taskloom.plain_map.x_run_plain_map__mutmut_4": (
        "futures = [run_in_thread(_Item(run, task, call), executor=run.executor, isolated=None) for call in calls]",
        "None is falsy like False: run_in_thread only tests `isolated` for truth",
    ),
}

_NO_SIGNAL = (
    "a plain map's bodies are sync and run with no step scope (task calls in them are plain calls, "
    "workflow builtins are not reachable from them), so no item fails with a WorkflowSignal unless its body "
    "raises one itself; the general path (tasks.compose.gather_steps) has the same rule"
)

UNREACHABLE: dict[str, tuple[str, str]] = {
    "taskloom.plain_map.x_run_plain_map__mutmut_40": ("signal = None", _NO_SIGNAL),
    "taskloom.plain_map.x_run_plain_map__mutmut_44": (
        "raise signal if (signal is not None) and False else ordered[0]",
        _NO_SIGNAL,
    ),
}
