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

_FUTURE = "taskloom.runtime.future.xǁFutureǁ"
_SESSION = "taskloom.runtime.session.xǁSessionǁ"
_INSTANCE = "taskloom.runtime.instance.xǁTaskInstanceǁ"

_STATE = (
    "TaskInstance._state is only ever compared with 'created' (start, _cancel) and 'queued' (_cancel); "
    "'launched' and 'finished' are never read, so any other value written in their place behaves the same"
)

#: mutmut's mutant name -> (the mutated line, stripped, as ``mutmut show`` prints it after "+", the reason)
EQUIVALENT: dict[str, tuple[str, str]] = {
    # -- taskloom/runtime/future.py ---------------------------------------------------------------------
    f"{_FUTURE}__init____mutmut_11": (
        'self._value: Any = ""',
        "_value is read only by result() once _wait() said the future is done, and _done is set only by _finish, "
        "which sets _value in the same locked assignment: the initial value is never read",
    ),
    f"{_FUTURE}_wait__mutmut_5": (
        "if timeout is not None and timeout < 0:",
        "differs only for timeout == 0, which the mutant sends down the waiting path: a waiter is added, "
        "acquire(timeout=0) does not block, the waiter is removed and _done is returned under the lock, the "
        "same answer as the original's early False unless another thread finishes the future within those "
        "few instructions, when either answer is correct for a poll that raced with the finish",
    ),
    # -- taskloom/runtime/session.py --------------------------------------------------------------------
    "taskloom.runtime.session.x__owner__mutmut_2": (
        'current = ""',
        "outside an event loop the owner's second half only has to be the same at a block's enter and leave "
        "and differ from any live asyncio task's id: id('') is, like id(None), a constant of the interpreter "
        "that no task can share",
    ),
    f"{_SESSION}_admit__mutmut_29": (
        "admitted = None",
        "_admit's one caller (TaskInstance.start) only tests the result for truth; None is falsy like False",
    ),
    f"{_SESSION}_finished__mutmut_3": (
        "self._active.pop(instance.id, )",
        "every instance reaches _finished exactly once and is in _active then: _admit adds it under the lock "
        "before it can be launched or withdrawn; a withdrawn one is never launched, and a launched one is "
        "completed once (InstanceRun refuses a second report), so the default of pop() is never used",
    ),
    f"{_SESSION}_withdraw__mutmut_4": (
        "return True",
        "only a 'queued' instance is withdrawn, and _admit created its task's _Slots before queueing it; "
        "_Slots are never removed, so `slots is None` cannot hold here",
    ),
    # -- taskloom/runtime/instance.py -------------------------------------------------------------------
    "taskloom.runtime.instance.xǁInstanceRunǁ__init____mutmut_2": (
        "self._reported = None",
        "_reported is only tested for truth; None is falsy like False",
    ),
    f"{_INSTANCE}__init____mutmut_9": (
        "self._args: tuple[Any, ...] = None",
        "start() sets _args before the instance is admitted, and only a launched instance has an InstanceRun "
        "(the one reader of _args): the initial value is never read",
    ),
    f"{_INSTANCE}__init____mutmut_10": (
        "self._kwargs: dict[str, Any] = None",
        "as __init____mutmut_9, for _kwargs",
    ),
    f"{_INSTANCE}_cancel__mutmut_5": ("self._state = None", _STATE),
    f"{_INSTANCE}_cancel__mutmut_6": ('self._state = "XXfinishedXX"', _STATE),
    f"{_INSTANCE}_cancel__mutmut_7": ('self._state = "FINISHED"', _STATE),
    f"{_INSTANCE}_cancel__mutmut_16": ("self._state = None", _STATE),
    f"{_INSTANCE}_cancel__mutmut_17": ('self._state = "XXfinishedXX"', _STATE),
    f"{_INSTANCE}_cancel__mutmut_18": ('self._state = "FINISHED"', _STATE),
    f"{_INSTANCE}_complete__mutmut_7": ("self._state = None", _STATE),
    f"{_INSTANCE}_complete__mutmut_8": ('self._state = "XXfinishedXX"', _STATE),
    f"{_INSTANCE}_complete__mutmut_9": ('self._state = "FINISHED"', _STATE),
    f"{_INSTANCE}_launch__mutmut_1": ("self._state = None", _STATE),
    f"{_INSTANCE}_launch__mutmut_2": ('self._state = "XXlaunchedXX"', _STATE),
    f"{_INSTANCE}_launch__mutmut_3": ('self._state = "LAUNCHED"', _STATE),
    # -- taskloom/runtime/control.py --------------------------------------------------------------------
    "taskloom.runtime.control.xǁTaskControlǁlog__mutmut_2": (
        'def log(self, message: str, level: str = "INFO", **extra_data: Any) -> None:',
        "the level is lower-cased (`str(level).lower()`) before anything reads it, so 'INFO' is 'info'",
    ),
}

#: mutants that differ only in a situation the tests cannot create (same format as EQUIVALENT)
UNREACHABLE: dict[str, tuple[str, str]] = {}
