"""The rules every store shares (``taskloom/store/base.py``), at their edges (issue 14, mutation testing):
who holds an execution, when taking one over counts a crash, which ``limit`` a listing accepts, and how a
row this taskloom cannot read is reported. The stores call these helpers inside their transactions; the
contract suite checks them through the stores, these check each condition on its own.
"""

from __future__ import annotations

import pytest

from taskloom.errors import StoreError, TaskloomError
from taskloom.events import EventType
from taskloom.store.base import (
    ExecutionRecord,
    ExecutionStatus,
    check_limit,
    decode_events,
    held_by_another,
    holder_died,
)

NOW = 1_000_000.0


def record(
    status: str = ExecutionStatus.RUNNING, owner: str | None = "w1", expires: float | None = NOW + 10
) -> ExecutionRecord:
    return ExecutionRecord("exec-1", "flow", status, None, None, 1.0, 1.0, None, owner, expires)


# -- held_by_another -------------------------------------------------------------------------------------


def test_a_running_execution_under_another_owners_live_lease_is_held() -> None:
    assert held_by_another(record(), "w2", NOW) is True
    assert held_by_another(record(expires=NOW), "w2", NOW) is True  # a lease is live up to its last instant


def test_an_execution_is_not_held_against_its_own_owner() -> None:
    assert held_by_another(record(), "w1", NOW) is False


def test_an_expired_or_missing_lease_holds_nothing() -> None:
    assert held_by_another(record(expires=NOW - 0.001), "w2", NOW) is False
    assert held_by_another(record(expires=None), "w2", NOW) is False
    assert held_by_another(record(owner=None), "w2", NOW) is False


@pytest.mark.parametrize("status", [s for s in ExecutionStatus.ALL if s != ExecutionStatus.RUNNING])
def test_only_a_running_execution_can_be_held(status: str) -> None:
    assert held_by_another(record(status=status), "w2", NOW) is False


# -- holder_died -----------------------------------------------------------------------------------------


def test_taking_over_a_running_execution_leased_to_another_means_its_holder_died() -> None:
    assert holder_died(record(), "w2") is True
    assert holder_died(record()) is True  # a new owner of None: any named holder died


def test_taking_back_ones_own_execution_or_one_nobody_held_is_no_crash() -> None:
    assert holder_died(record(), "w1") is False
    assert holder_died(record(owner=None), "w2") is False
    assert holder_died(record(owner=None)) is False


@pytest.mark.parametrize("status", [s for s in ExecutionStatus.ALL if s != ExecutionStatus.RUNNING])
def test_taking_an_execution_that_was_not_running_is_no_crash(status: str) -> None:
    assert holder_died(record(status=status), "w2") is False


# -- check_limit -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 100, 10**9])
def test_a_whole_number_of_at_least_one_is_a_valid_limit(limit: int) -> None:
    check_limit(limit)


@pytest.mark.parametrize("limit", [0, -1, True, False, 1.0, 2.5, "10", None])
def test_any_other_limit_is_refused_naming_it(limit: object) -> None:
    with pytest.raises(TaskloomError) as raised:
        check_limit(limit)  # type: ignore[arg-type]

    assert str(raised.value) == f"list_executions: limit must be a whole number of at least 1, got {limit!r}"


# -- decode_events ---------------------------------------------------------------------------------------


def test_rows_decode_to_events_in_order() -> None:
    rows = [
        (1, "execution_started", NOW, None, "flow", b"in", None),
        (2, "step_completed", NOW + 1, "1", "task", b"out", '{"attempt":2}'),
    ]

    events = decode_events("the SQLite store 'x.db'", "exec-1", rows)

    assert [(e.seq, e.type, e.step_id, e.raw_value, e.data) for e in events] == [
        (1, EventType.EXECUTION_STARTED, None, b"in", {}),
        (2, EventType.STEP_COMPLETED, "1", b"out", {"attempt": 2}),
    ]
    assert decode_events("anywhere", "exec-1", []) == []


def test_a_row_that_cannot_be_read_is_a_store_error_naming_the_store_first() -> None:
    rows = [(1, "execution_started", NOW, None, "flow", None, None), (7, "step_teleported", NOW, "1", "t", None, None)]

    with pytest.raises(StoreError) as raised:
        decode_events("the SQLite store 'x.db'", "exec-1", rows)

    assert str(raised.value) == (
        "the SQLite store 'x.db': execution exec-1: event 7 has type 'step_teleported', which this taskloom "
        "does not know; it was written by a newer taskloom: upgrade taskloom to read it"
    )
    assert raised.value.__cause__ is None and raised.value.__suppress_context__ is True
