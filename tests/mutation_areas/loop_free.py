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

_FIRST_YIELD = (
    "what the coroutine yielded before the loop started is NEEDS_LOOP (then _resume goes straight to `yield from`) "
    "or a bare yield (asyncio.sleep(0), the only thing it can yield without a loop); handing None instead makes "
    "_resume yield a bare None first, which asyncio's task answers by stepping it again on the next pass of the "
    "loop: one more pass, nothing any test (or program) can observe"
)

#: mutmut's name -> (the mutated line, stripped, as ``mutmut show`` prints it after "+", why no test can
#: tell it from the original)
EQUIVALENT: dict[str, tuple[str, str]] = {
    "taskloom.loop_free.x__continue__mutmut_2": (
        "return await _resume(coro, None)  # type: ignore[no-any-return]",
        _FIRST_YIELD,
    ),
    "taskloom.loop_free.x_drive__mutmut_11": (
        "return runner.run(_continue(coro, None), context=context)",
        _FIRST_YIELD,
    ),
}

#: mutmut's name -> (the mutated line, why no test run by mutmut can reach it)
UNREACHABLE: dict[str, tuple[str, str]] = {
    "taskloom.loop_free.xǁ_Markerǁ__init____mutmut_1": (
        "self._name = None",
        "the two markers are made when the module is imported, before mutmut switches a mutant on; their names "
        "are checked by test_current_task_is_asyncios_on_a_loop_and_no_loop_elsewhere",
    ),
}
