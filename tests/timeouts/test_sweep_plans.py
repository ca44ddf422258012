"""The deadline sweep reads only a workflow's unfinished executions, on both stores: its statements'
plans use the partial indexes of migration 012, not the workflow's whole history (which a worker would
otherwise read every second, finished executions included)."""

from __future__ import annotations

import pytest

from taskloom.events import EventType, NewEvent
from taskloom.store import ExecutionStatus, Store
from taskloom.store.base import _NEXT_DEADLINE, _PAST_DEADLINE, _STAMP_DEADLINES
from taskloom.store.statements import Statements

#: finished executions of the swept workflow: what the sweep must not read
HISTORY = 300


def plan(store: Store, sql: str, params: tuple[object, ...]) -> str:
    statements = Statements(store)
    sql = sql.replace("%s", "?")
    if statements.postgres:
        rows = statements.run_all([("SET LOCAL enable_seqscan = off", ()), (f"EXPLAIN {sql}", params)])[-1]
    else:
        rows = statements.run(f"EXPLAIN QUERY PLAN {sql}", params)
    return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(
    ("statement", "params", "index"),
    [
        (_STAMP_DEADLINES.format(lock=""), (60.0, "swept"), "executions_without_deadline"),
        (_PAST_DEADLINE.format(lock=""), ("swept", 1e12, 1e12), "executions_by_deadline"),
        (_NEXT_DEADLINE, ("swept", 0.0), "executions_by_deadline"),
    ],
    ids=["stamp", "past", "next"],
)
def test_each_sweep_statement_uses_its_partial_index(
    store: Store, statement: str, params: tuple[object, ...], index: str
) -> None:
    for n in range(HISTORY):
        store.create_execution(f"old-{n}", "swept", None, ExecutionStatus.RUNNING)
        store.append_events(f"old-{n}", [NewEvent(EventType.EXECUTION_COMPLETED)], status=ExecutionStatus.COMPLETED)
    store.create_execution("live", "swept", None, ExecutionStatus.QUEUED)
    Statements(store).run("ANALYZE")
    chosen = plan(store, statement, params)
    # Migration 014's (workflow, status, created_at) index seeks the unfinished statuses just as well:
    # either way none of the workflow's finished history is read.
    assert index in chosen or "executions_by_workflow_status (workflow=? AND status=?)" in chosen, chosen
