"""OpenTelemetry spans (``taskloom.tracing.enable()``), read from the SDK's in-memory exporter: one per run
of an execution, one per step run under it, parented as the steps nest; attributes, retries, failures;
none for replayed steps; and OpenTelemetry not even imported unless enabled."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from taskloom import TaskloomError, WorkflowExecutionContext, task, tracing, workflow
from taskloom.tasks import parallel, pause


def by_name(exporter: Any) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


def parent_of(span: Any) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def step_span(exporter: Any, step_id: str) -> Any:
    (span,) = [s for s in exporter.get_finished_spans() if s.attributes.get("taskloom.step_id") == step_id]
    return span


#: the span current in each add_one body, as the user's code (or an instrumented library) sees it there
seen_as_current: list[int] = []


@task
def add_one(x: int) -> int:
    seen_as_current.append(trace.get_current_span().get_span_context().span_id)
    return x + 1


@task
async def both(x: int) -> list[int]:
    return list(await parallel(add_one(x), add_one(x + 10)))


@workflow
async def nested(ctx: WorkflowExecutionContext[int]) -> list[int]:
    first = await add_one(ctx.input)
    return [first, *await both(first)]


def test_one_span_per_execution_and_per_step_parented_as_they_nest(isolated_store: str, spans: Any) -> None:
    seen_as_current.clear()
    ctx = nested.run(1)
    assert ctx.output == [2, 3, 13]
    found = by_name(spans)
    (execution,) = found["workflow nested"]
    assert execution.parent is None
    assert dict(execution.attributes) == {
        "taskloom.execution_id": ctx.execution_id,
        "taskloom.workflow": "nested",
        "taskloom.status": "completed",
    }
    root = execution.context.span_id
    first, fan, left, right = (step_span(spans, step) for step in ("1", "2", "2.1", "2.2"))
    assert [parent_of(s) for s in (first, fan)] == [root, root]
    # parallel branches in an async step's body: under that step
    assert [parent_of(s) for s in (left, right)] == [fan.context.span_id, fan.context.span_id]
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {execution.context.trace_id}
    assert dict(left.attributes) == {
        "taskloom.execution_id": ctx.execution_id,
        "taskloom.workflow": "nested",
        "taskloom.step_id": "2.1",
        "taskloom.task": "add_one",
        "taskloom.attempt": 1,
        "taskloom.status": "completed",
    }
    assert left.name == "step add_one" and fan.name == "step both"
    # inside a sync step's body (run in a thread), the step's span is current: the user's spans go under it
    assert sorted(seen_as_current) == sorted(s.context.span_id for s in (first, left, right))


class Flaky(Exception):
    pass


calls: list[int] = []


@task(retry_max_attempts=3, retry_delay=0)
def flaky_then_fine(x: int) -> int:
    calls.append(x)
    if len(calls) < 3:
        raise Flaky(f"attempt {len(calls)}")
    return x


@task
def broken(x: int) -> int:
    raise ValueError(f"broken on {x}")


@workflow
async def retried(ctx: WorkflowExecutionContext[int]) -> int:
    return await flaky_then_fine(ctx.input)


@workflow
async def failing(ctx: WorkflowExecutionContext[int]) -> int:
    return await broken(ctx.input)


def test_a_retried_step_says_which_attempt_succeeded_with_an_event_per_retry(isolated_store: str, spans: Any) -> None:
    calls.clear()
    retried.run(7)
    span = step_span(spans, "1")
    assert span.attributes["taskloom.attempt"] == 3
    assert span.attributes["taskloom.status"] == "completed"
    assert [(e.name, e.attributes["taskloom.attempt"], e.attributes["exception.type"]) for e in span.events] == [
        ("taskloom.retry", 1, "Flaky"),
        ("taskloom.retry", 2, "Flaky"),
    ]


def test_a_failed_step_and_execution_record_the_exception_and_an_error_status(isolated_store: str, spans: Any) -> None:
    ctx = failing.run(3)
    assert ctx.has_failed
    for span in (step_span(spans, "1"), by_name(spans)["workflow failing"][0]):
        assert span.attributes["taskloom.status"] == "failed"
        assert span.status.status_code is StatusCode.ERROR
        (event,) = [e for e in span.events if e.name == "exception"]
        assert event.attributes["exception.type"] == "ValueError"
        assert event.attributes["exception.message"] == "broken on 3"


@workflow
async def approval(ctx: WorkflowExecutionContext[int]) -> int:
    before = await add_one(ctx.input)
    approved = await pause("approve")
    return await add_one(before + approved)


def test_replayed_steps_get_no_span_and_each_run_of_an_execution_gets_its_own(isolated_store: str, spans: Any) -> None:
    ctx = approval.run(1)
    assert ctx.is_paused
    first_run = spans.get_finished_spans()
    assert [s.name for s in first_run if s.name.startswith("step")] == ["step add_one"]
    assert by_name(spans)["workflow approval"][0].attributes["taskloom.status"] == "paused"
    spans.clear()
    assert approval.resume(ctx.execution_id, 100).output == 103
    steps = [s for s in spans.get_finished_spans() if s.name.startswith("step")]
    assert [s.attributes["taskloom.step_id"] for s in steps] == ["3"]  # step 1 was replayed: no span
    (second_run,) = by_name(spans)["workflow approval"]
    assert second_run.attributes["taskloom.status"] == "completed"
    assert parent_of(steps[0]) == second_run.context.span_id


@workflow
async def child(ctx: WorkflowExecutionContext[int]) -> int:
    return await add_one(ctx.input)


@workflow
async def parent(ctx: WorkflowExecutionContext[int]) -> int:
    return await child(ctx.input) * 2


def test_a_child_workflow_run_here_is_under_its_parents_step(isolated_store: str, spans: Any) -> None:
    assert parent.run(1).output == 4
    found = by_name(spans)
    (outer,) = found["workflow parent"]
    (child_call,) = found["step workflow:child"]
    (inner,) = found["workflow child"]
    assert parent_of(child_call) == outer.context.span_id
    assert child_call.attributes["taskloom.step_id"] == "1"
    assert child_call.attributes["taskloom.status"] == "completed"
    assert parent_of(inner) == child_call.context.span_id
    assert inner.context.trace_id == outer.context.trace_id
    (child_step,) = found["step add_one"]
    assert parent_of(child_step) == inner.context.span_id


def test_no_span_once_tracing_is_disabled(isolated_store: str, spans: Any) -> None:
    tracing.disable()
    assert not tracing.is_enabled()
    nested.run(1)
    assert spans.get_finished_spans() == ()


def test_enable_names_the_extra_when_opentelemetry_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # what an uninstalled package looks like to import
    with pytest.raises(TaskloomError, match=r"taskloom\[otel\]"):
        tracing.enable()
    assert not tracing.is_enabled()


def test_opentelemetry_is_imported_only_when_tracing_is_enabled() -> None:
    program = (
        "import sys, taskloom, taskloom.tracing\n"
        "before = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
        "taskloom.tracing.enable()\n"
        "after = any(m.startswith('opentelemetry') for m in sys.modules)\n"
        "print(before, after)\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[] True"
    importtime = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import taskloom"], capture_output=True, text=True, check=True
    )
    assert "opentelemetry" not in importtime.stderr


def test_an_exception_the_caller_was_handling_is_not_the_runs(isolated_store: str, spans: Any) -> None:
    try:
        raise KeyError("the caller's own")
    except KeyError:
        assert nested.run(1).has_succeeded
    (execution,) = by_name(spans)["workflow nested"]
    assert execution.status.status_code is StatusCode.UNSET
    assert [e.name for e in execution.events] == []


def test_a_replay_mismatch_leaving_the_driver_is_recorded_on_the_runs_span(isolated_store: str, spans: Any) -> None:
    from taskloom import NonDeterminismError

    @workflow.with_options(name="drifting")
    async def first(ctx: WorkflowExecutionContext[int]) -> int:
        await add_one(1)
        await pause("wait")
        return 0

    @workflow.with_options(name="drifting")
    async def second(ctx: WorkflowExecutionContext[int]) -> int:
        await broken(1)  # step 1 was add_one
        return 0

    ctx = first.run(0)
    spans.clear()
    with pytest.raises(NonDeterminismError):
        second.resume(ctx.execution_id, None)
    (execution,) = by_name(spans)["workflow drifting"]
    assert execution.status.status_code is StatusCode.ERROR
    (event,) = execution.events
    assert event.attributes["exception.type"].endswith("NonDeterminismError")


def test_a_child_step_waiting_durably_ends_its_span_as_paused(
    isolated_store: str, spans: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKLOOM_START", "queue")  # the child is queued for a worker: the parent waits
    assert parent.run(1).is_paused
    (child_call,) = by_name(spans)["step workflow:child"]
    assert child_call.attributes["taskloom.status"] == "paused"
    assert child_call.status.status_code is StatusCode.UNSET and child_call.events == ()
    assert "workflow child" not in by_name(spans)
