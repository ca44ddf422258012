"""The CLI shows a failed workflow's stored traceback, the user's frames only (issue 9)."""

from __future__ import annotations

from taskloom import WorkflowExecutionContext, serde, task, workflow
from taskloom.cli.tracebacks import stored_traceback, user_traceback


def _inner_helper(order: str) -> None:
    raise KeyError(f"no stock for {order}")


@task
def reserve(order: str) -> None:
    try:
        _inner_helper(order)
    except KeyError as error:
        raise RuntimeError("reservation failed") from error


@workflow
async def ordering(ctx: WorkflowExecutionContext[str]) -> None:
    await reserve(ctx.input)


def test_the_users_frames_stay_and_taskloom_and_python_frames_go() -> None:
    ctx = ordering.run("A-7")
    assert ctx.has_failed
    error = serde.loads(serde.dumps_error(ctx.output, what="the error"))  # as a later process reads it
    full = stored_traceback(error)
    assert full is not None and "taskloom/replay.py" in full  # the machinery is in the stored text
    shown = user_traceback(error)
    assert shown is not None
    assert "taskloom/" not in shown.replace("tests/unit", "")
    assert f'File "{__file__}"' in shown
    assert "in reserve" in shown and "raise RuntimeError" in shown
    assert "of taskloom and Python hidden]" in shown  # "[1 frame of taskloom ...", or "[3 frames of ..."
    assert shown.rstrip().endswith("RuntimeError: reservation failed")


def test_the_cause_of_a_failure_keeps_its_own_frames() -> None:
    ctx = ordering.run("B-1")
    shown = user_traceback(ctx.output)
    assert shown is not None
    assert "in _inner_helper" in shown and "KeyError: 'no stock for B-1'" in shown
    assert "The above exception was the direct cause of the following exception:" in shown
    assert shown.index("KeyError") < shown.index("RuntimeError: reservation failed")


def test_an_error_without_a_stored_traceback_shows_none() -> None:
    assert user_traceback(ValueError("plain")) is None
    assert stored_traceback(ValueError("plain")) is None
