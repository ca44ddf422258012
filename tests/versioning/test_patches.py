"""``patched`` and ``deprecate_patch``: which branch an execution takes, decided once, the same on replay.

Three generations of one workflow ``order`` (same name, as after a deploy): ``v1`` computes the tax one
way, ``v2`` puts the new way behind ``patched("fix-tax")`` (and a second ``patched`` block after the
pause), ``v3`` keeps only the new way behind ``deprecate_patch("fix-tax")``. Each test runs on SQLite and
PostgreSQL (the ``default`` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest

from taskloom import NonDeterminismError, WorkflowExecutionContext, deprecate_patch, patched, task, workflow
from taskloom.events import EventType
from taskloom.store import Store
from taskloom.tasks import pause

pytestmark = pytest.mark.usefixtures("default")
calls: list[str] = []


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    calls.clear()


@task
def tax_v1(amount: int) -> int:
    calls.append("tax_v1")
    return amount // 10


@task
def tax_v2(amount: int) -> int:
    calls.append("tax_v2")
    return amount // 5


@workflow.with_options(name="order")
async def v1(ctx: WorkflowExecutionContext[int]) -> str:
    tax = await tax_v1(ctx.input)
    await pause("approve")
    return f"v1:{tax}"


@workflow.with_options(name="order")
async def v2(ctx: WorkflowExecutionContext[int]) -> str:
    if patched("fix-tax"):
        tax = await tax_v2(ctx.input)
    else:
        tax = await tax_v1(ctx.input)
    await pause("approve")
    # a second block of the same change, met after the resume: the same answer as the first
    return f"v2-new:{tax}" if patched("fix-tax") else f"v2-old:{tax}"


@workflow.with_options(name="order")
async def v3(ctx: WorkflowExecutionContext[int]) -> str:
    deprecate_patch("fix-tax")
    tax = await tax_v2(ctx.input)
    await pause("approve")
    return f"v3:{tax}"


@workflow.with_options(name="late")
async def late_v1(ctx: WorkflowExecutionContext[int]) -> str:
    await pause("approve")
    return f"old:{await tax_v1(ctx.input)}"


@workflow.with_options(name="late")
async def late_v2(ctx: WorkflowExecutionContext[int]) -> str:
    await pause("approve")
    if patched("fix-tax"):  # after the pause: an execution paused before it never passed it
        return f"new:{await tax_v2(ctx.input)}"
    return f"old:{await tax_v1(ctx.input)}"


def markers(default: Store, execution_id: str) -> list[tuple[str | None, dict[str, Any]]]:
    return [(e.name, e.data) for e in default.load_events(execution_id) if e.type is EventType.PATCHED]


def test_a_new_execution_takes_the_new_branch_and_records_the_patch_once(default: Store) -> None:
    paused = v2.run(100)
    assert paused.is_paused
    assert markers(default, paused.execution_id) == [("fix-tax", {"at": "1"})]

    done = v2.resume(paused.execution_id, "yes")
    assert done.output == "v2-new:20"
    assert calls == ["tax_v2"], "the replay ran the recorded step again"
    assert len(markers(default, done.execution_id)) == 1, "a replay recorded the patch again"


def test_an_execution_that_passed_the_patch_on_old_code_keeps_the_old_branch_on_the_new_code(
    default: Store,
) -> None:
    paused = v1.run(100)
    assert calls == ["tax_v1"]

    done = v2.resume(paused.execution_id, "yes")
    assert done.has_succeeded, done.output
    assert done.output == "v2-old:10", "the second patched() block must answer as the first did"
    assert calls == ["tax_v1"], "the old branch's recorded step ran again"
    assert markers(default, done.execution_id) == []


def test_an_execution_paused_before_the_patch_takes_the_new_branch_when_it_gets_there(default: Store) -> None:
    paused = late_v1.run(100)
    done = late_v2.resume(paused.execution_id, "yes")
    assert done.output == "new:20"
    assert [name for name, _ in markers(default, done.execution_id)] == ["fix-tax"]


def test_deprecate_patch_replays_executions_that_recorded_the_patch_and_new_ones_without_error(
    default: Store,
) -> None:
    patched_one = v2.run(100)
    fresh = v3.run(50)
    assert [name for name, _ in markers(default, fresh.execution_id)] == ["fix-tax"], "a new one is marked new"

    assert v3.resume(patched_one.execution_id, "yes").output == "v3:20"
    assert v3.resume(fresh.execution_id, "yes").output == "v3:10"
    assert calls == ["tax_v2", "tax_v2"], "a recorded step ran again"


def test_deprecate_patch_refuses_an_execution_that_took_the_old_branch_and_leaves_it_as_it_was(
    default: Store,
) -> None:
    old = v1.run(100)
    before = default.load_events(old.execution_id)

    with pytest.raises(NonDeterminismError, match=r"deprecate_patch\('fix-tax'\).*patched\('fix-tax'\)"):
        v3.resume(old.execution_id, "yes")
    assert v3.status(old.execution_id).status == "paused"
    assert default.load_events(old.execution_id) == before

    assert v2.resume(old.execution_id, "yes").output == "v2-old:10", "the code with the patch finishes it"


def test_outside_a_workflow_patched_is_true_and_deprecate_patch_does_nothing() -> None:
    assert patched("fix-tax") is True
    assert deprecate_patch("fix-tax") is None


@pytest.mark.parametrize("bad", ["", "   ", None, 3, "x" * 101])
def test_a_bad_change_id_is_a_clear_error(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"patched\(\): change id must be a non-empty string"):
        patched(bad)
    with pytest.raises(ValueError, match=r"deprecate_patch\(\): change id"):
        deprecate_patch(bad)


def test_the_names_are_exported_where_the_other_builtins_are() -> None:
    import taskloom
    import taskloom.tasks

    for module in (taskloom, taskloom.tasks):
        assert {"patched", "deprecate_patch"} <= set(module.__all__)
        assert module.patched is patched and module.deprecate_patch is deprecate_patch
