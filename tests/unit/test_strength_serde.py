"""Stored exceptions keep their whole cause chain, and their traceback note only once (issue 14)."""

from __future__ import annotations

from typing import Any

import pytest

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.serde import dumps_error, loads

#: how many links of a cause chain are stored (taskloom/serde.py); longer chains are cut there
STORED_LINKS = 8

NOTE = "(original traceback)"


class StageError(Exception):
    """One link of a cause chain; its message ``stage N`` tells the links apart."""

    @property
    def stage(self) -> int:
        return int(str(self.args[0]).removeprefix("stage "))


def raise_chain(links: int) -> BaseException:
    """Raise ``StageError(0) from StageError(1) from ... StageError(links - 1)``; return the caught error."""

    def level(stage: int) -> None:
        if stage == links - 1:
            raise StageError(f"stage {stage}")
        try:
            level(stage + 1)
        except StageError as cause:
            raise StageError(f"stage {stage}") from cause

    try:
        level(0)
    except StageError as error:
        return error
    raise AssertionError("unreachable")


def stages(error: BaseException | None) -> list[int]:
    found = []
    while error is not None:
        assert isinstance(error, StageError), error
        found.append(error.stage)
        error = error.__cause__
    return found


@pytest.mark.parametrize("links", [1, 2, 3, 5, STORED_LINKS])
def test_the_whole_cause_chain_comes_back(links: int) -> None:
    restored = loads(dumps_error(raise_chain(links), what="test"))
    assert stages(restored) == list(range(links))
    assert [str(e) for e in _chain(restored)] == [f"stage {n}" for n in range(links)]


def test_a_longer_chain_is_cut_at_the_stored_limit_not_lost() -> None:
    restored = loads(dumps_error(raise_chain(STORED_LINKS + 5), what="test"))
    assert stages(restored) == list(range(STORED_LINKS))


def test_a_cause_that_cannot_be_stored_keeps_its_place_in_the_chain() -> None:
    class Local(Exception):  # a local class cannot be pickled
        pass

    try:
        try:
            try:
                raise StageError("stage 2")
            except StageError as deepest:
                raise Local("unpicklable middle") from deepest
        except Local as middle:
            raise StageError("stage 0") from middle
    except StageError as error:
        restored = loads(dumps_error(error, what="task 't'"))
    chain = _chain(restored)
    assert len(chain) == 3
    assert isinstance(chain[0], StageError) and chain[0].stage == 0
    assert "Local: unpicklable middle" in str(chain[1])
    assert isinstance(chain[2], StageError) and chain[2].stage == 2


def _chain(error: BaseException | None) -> list[BaseException]:
    found = []
    while error is not None:
        found.append(error)
        error = error.__cause__
    return found


def _notes(error: BaseException) -> list[str]:
    return [n for n in getattr(error, "__notes__", []) if n.startswith(NOTE)]


def test_storing_an_error_twice_adds_its_traceback_note_once() -> None:
    error = raise_chain(1)
    first = loads(dumps_error(error, what="test"))
    second = loads(dumps_error(error, what="test"))
    assert len(_notes(first)) == 1
    assert len(_notes(second)) == 1
    assert "raise_chain" in _notes(second)[0]  # the note is the original traceback


def test_an_error_stored_raised_again_and_stored_again_keeps_one_note() -> None:
    """What a replayed failure does: the stored error is re-raised, and may be stored once more."""
    restored = loads(dumps_error(raise_chain(2), what="test"))
    try:
        raise restored
    except StageError as again:
        stored_again = loads(dumps_error(again, what="test"))
    assert len(_notes(stored_again)) == 1
    assert stages(stored_again) == [0, 1]


def test_a_workflow_step_failure_keeps_its_chain_and_one_note_through_replay() -> None:
    @task
    def deep() -> None:
        raise raise_chain(4)

    @workflow
    async def failing(ctx: WorkflowExecutionContext[None]) -> Any:
        await deep()

    ctx = failing.run()
    assert ctx.has_failed
    assert stages(ctx.output) == [0, 1, 2, 3]
    again = failing.run(execution_id=ctx.execution_id)  # finished: read back from the store
    assert stages(again.output) == [0, 1, 2, 3]
    assert len(_notes(again.output)) == 1
