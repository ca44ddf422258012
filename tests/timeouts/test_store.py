"""The store's deadline contract, on SQLite and PostgreSQL: ``fix_deadline`` fixes created_at + timeout
once; ``expire_executions`` fails exactly the unfinished executions past their deadline that nobody runs."""

from __future__ import annotations

import pytest

from taskloom import TaskTimeoutError, serde
from taskloom.deadlines import Deadline
from taskloom.events import EventType, NewEvent
from taskloom.store import ExecutionStatus, Store
from taskloom.store.base import Expired

FAR = 10_000.0


def failure(execution_id: str, workflow: str, at: float) -> tuple[NewEvent, bytes]:
    return Deadline(execution_id, workflow, 1.0, at).failure()


def created_at(store: Store, execution_id: str) -> float:
    record = store.get_execution(execution_id)
    assert record is not None
    return record.created_at


def test_fix_deadline_sets_created_at_plus_timeout_once_and_never_moves_it(store: Store) -> None:
    store.create_execution("e", "wf", None, ExecutionStatus.QUEUED)
    first = store.fix_deadline("e", 30)
    assert first == pytest.approx(created_at(store, "e") + 30)
    assert store.fix_deadline("e", 5) == first
    assert store.fix_deadline("missing", 5) is None


def test_expire_fails_queued_paused_and_abandoned_executions_past_their_deadline(store: Store) -> None:
    store.create_execution("queued", "wf", None, ExecutionStatus.QUEUED)
    store.create_execution("paused", "wf", None, ExecutionStatus.RUNNING)
    store.append_events("paused", [], status=ExecutionStatus.PAUSED, wake_at=None)
    store.create_execution("abandoned", "wf", None, ExecutionStatus.RUNNING, lease_owner="dead", lease_seconds=-1)
    store.create_execution("unleased", "wf", None, ExecutionStatus.RUNNING)
    now = created_at(store, "unleased") + 2
    expired = store.expire_executions({"wf": 1.0}, now, failure)
    assert sorted(expired.failed) == ["abandoned", "paused", "queued", "unleased"]
    assert expired.next_deadline is None
    for execution_id in expired.failed:
        record = store.get_execution(execution_id)
        assert record is not None
        assert (record.status, record.lease_owner, record.wake_at) == (ExecutionStatus.FAILED, None, None)
        assert isinstance(serde.loads(record.output), TaskTimeoutError)
        last = store.load_events(execution_id)[-1]
        assert last.type is EventType.EXECUTION_FAILED and last.data["deadline"] == store.fix_deadline(execution_id, 1)


def test_expire_leaves_a_live_owner_finished_executions_other_workflows_and_future_deadlines(store: Store) -> None:
    store.create_execution("live", "wf", None, ExecutionStatus.RUNNING, lease_owner="alive", lease_seconds=FAR)
    store.create_execution("done", "wf", None, ExecutionStatus.RUNNING)
    store.append_events("done", [NewEvent(EventType.EXECUTION_COMPLETED)], status=ExecutionStatus.COMPLETED)
    store.create_execution("other", "untimed", None, ExecutionStatus.QUEUED)
    store.create_execution("later", "slow", None, ExecutionStatus.QUEUED)
    now = created_at(store, "later") + 2
    expired = store.expire_executions({"wf": 1.0, "slow": 60.0}, now, failure)
    assert expired.failed == ()
    assert expired.next_deadline == pytest.approx(created_at(store, "later") + 60)
    statuses = {e: store.get_execution(e).status for e in ("live", "done", "other", "later")}  # type: ignore[union-attr]
    assert statuses == {"live": "running", "done": "completed", "other": "queued", "later": "queued"}


def test_a_deadline_fixed_earlier_wins_over_the_sweeps_timeout(store: Store) -> None:
    store.create_execution("e", "wf", None, ExecutionStatus.QUEUED)
    fixed = store.fix_deadline("e", FAR)
    assert fixed is not None
    assert store.expire_executions({"wf": 1.0}, fixed - 1, failure) == Expired((), fixed)
    assert store.expire_executions({"wf": 1.0}, fixed, failure).failed == ("e",)
