"""retry_on, retry_jitter and retry_max_delay on workflow steps, on both stores: the delays actually
taken are the ones recorded, and a replayed step is answered from the log, not retried again."""

from __future__ import annotations

from typing import Any

import pytest

from taskloom import WorkflowExecutionContext, task, workflow
from taskloom.events import Event, EventType
from taskloom.store import Store
from taskloom.tasks import pause

pytestmark = pytest.mark.usefixtures("default")


class Flaky:
    """Raises ``error`` on the first ``failures`` calls, then returns ``"ok"``; counts the calls."""

    def __init__(self, failures: int, error: type[Exception] = ValueError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "ok"


def step_events(ctx: WorkflowExecutionContext[Any], step_id: str = "1") -> list[Event]:
    return [e for e in ctx.events if e.step_id == step_id]


def recorded_delays(ctx: WorkflowExecutionContext[Any]) -> list[float]:
    return [e.data["delay"] for e in ctx.events if e.type is EventType.STEP_RETRYING]


def run_one_step(body: Flaky, **options: Any) -> WorkflowExecutionContext[Any]:
    step = task(name="flaky", **options)(body)

    @workflow
    async def one_step(ctx: WorkflowExecutionContext[None]) -> str:
        return await step()

    return one_step.run()


def test_a_step_failing_outside_retry_on_fails_after_one_attempt() -> None:
    body = Flaky(failures=10, error=KeyError)
    ctx = run_one_step(body, retry_on=ValueError, retry_max_attempts=3, retry_delay=0)
    assert ctx.has_failed and isinstance(ctx.output, KeyError)
    assert body.calls == 1
    assert [e.type for e in step_events(ctx)] == [EventType.STEP_STARTED, EventType.STEP_FAILED]


def test_a_step_failing_inside_retry_on_is_retried_and_each_retry_recorded() -> None:
    body = Flaky(failures=2, error=ValueError)
    ctx = run_one_step(body, retry_on=(KeyError, ValueError), retry_max_attempts=3, retry_delay=0)
    assert ctx.output == "ok"
    assert [e.data["attempt"] for e in ctx.events if e.type is EventType.STEP_RETRYING] == [1, 2]


def test_jittered_delays_are_recorded_below_the_base_and_above_its_floor() -> None:
    body = Flaky(failures=4)
    ctx = run_one_step(body, retry_max_attempts=4, retry_delay=0.02, retry_backoff=2, retry_jitter=0.5)
    assert ctx.output == "ok"
    delays = recorded_delays(ctx)
    base = [0.02, 0.04, 0.08, 0.16]
    assert len(delays) == 4
    assert all(0.5 * b <= d <= b for d, b in zip(delays, base, strict=True))
    assert delays != base


def test_retry_max_delay_caps_the_recorded_delays() -> None:
    body = Flaky(failures=3)
    ctx = run_one_step(body, retry_max_attempts=3, retry_delay=0.01, retry_backoff=10, retry_max_delay=0.05)
    assert ctx.output == "ok"
    assert recorded_delays(ctx) == [0.01, 0.05, 0.05]


def test_a_replayed_retried_step_is_not_run_or_retried_again(default: Store) -> None:
    body = Flaky(failures=2)
    step = task(name="flaky", retry_max_attempts=2, retry_delay=0.01, retry_jitter=1)(body)

    @workflow
    async def retried_then_paused(ctx: WorkflowExecutionContext[None]) -> str:
        value = await step()
        approval = await pause("approve")
        return f"{value} {approval}"

    ctx = retried_then_paused.run()
    assert ctx.is_paused and body.calls == 3
    first = recorded_delays(ctx)
    resumed = retried_then_paused.resume(ctx.execution_id, "approved")
    assert resumed.output == "ok approved"
    assert body.calls == 3
    events = default.load_events(ctx.execution_id)
    assert [e.data["delay"] for e in events if e.type is EventType.STEP_RETRYING] == first
