"""Group commit (taskloom.group_commit): outcomes of steps that finish together share one transaction,
and each is durable before its awaiter moves on.

The first outcome of a pass of the event loop is written at once (a step finishing alone waits for
nothing); the others of that pass share the next transaction. Branches that finish in the same pass are
so written in two transactions, not one each.

Events appended in one transaction carry one timestamp (the stores stamp each ``append_events`` call
once), so the number of distinct timestamps among outcomes is the number of transactions that wrote
them. The crash tests run the workflow in a process of its own and SIGKILL it: once mid-map while the
other items' outcomes are being written, once right after the map returned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import groupapp
import pytest

from taskloom.events import STEP_OUTCOMES, Event, EventType
from taskloom.store import Store

HERE = Path(__file__).resolve().parent
ITEMS = groupapp.ITEMS


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GROUPAPP_DIR", str(tmp_path))
    return tmp_path


def outcomes(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if e.type in STEP_OUTCOMES]


def transactions(events: Sequence[Event]) -> list[int]:
    """How many of ``events`` each transaction wrote, in the order written."""
    return list(Counter(e.timestamp for e in events).values())


def test_the_branches_of_a_parallel_that_finish_together_share_a_transaction(default: Store) -> None:
    ctx = groupapp.branches.run()
    assert ctx.output == list(range(ITEMS))
    done = outcomes(ctx.events)
    assert [e.type for e in done] == [EventType.STEP_COMPLETED] * ITEMS
    assert transactions(done) == [1, ITEMS - 1]  # the first at once, then the others of the pass together
    # each step's deferred start went in the same transaction, right before its own outcome
    for outcome in done:
        index = ctx.events.index(outcome)
        start = ctx.events[index - 1]
        assert (start.type, start.step_id, start.timestamp) == (
            EventType.STEP_STARTED,
            outcome.step_id,
            outcome.timestamp,
        )


def test_the_items_of_a_map_that_finish_together_share_a_transaction(default: Store) -> None:
    ctx = groupapp.mapped_async.run()
    assert ctx.output == list(range(ITEMS))
    done = outcomes(ctx.events)
    assert sorted(e.step_id or "" for e in done) == sorted(str(n) for n in range(1, ITEMS + 1))
    assert transactions(done) == [1, ITEMS - 1]


def test_the_steps_of_a_graph_wave_share_a_transaction(default: Store) -> None:
    ctx = groupapp.graph_wave.run()
    done = outcomes(ctx.events)
    assert len(done) == 1 + ITEMS  # the root, then its wave
    assert transactions(done) == [1, 1, ITEMS - 1]  # the root alone; the wave's first at once, then the rest


def run_until_killed(flow: str, execution_id: str, folder: Path) -> None:
    """Run ``flow`` in a process of its own, armed to SIGKILL itself at the point under test."""
    (folder / "armed").touch()
    env = {
        **os.environ,
        "TASKLOOM_LEASE_SECONDS": "1",  # the rerun here takes over once the dead process's lease passed
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    }
    code = "import sys, groupapp; groupapp.main(sys.argv[1:])"
    process = subprocess.run([sys.executable, "-c", code, flow, execution_id], env=env, timeout=120, check=False)
    assert process.returncode == -signal.SIGKILL, f"the run ended with {process.returncode}, not killed"
    assert not (folder / "armed").exists()


def test_a_crash_while_a_maps_outcomes_are_written_leaves_each_item_recorded_or_not(
    default: Store, folder: Path
) -> None:
    execution_id = "crash-mid-batch"
    run_until_killed("squares", execution_id, folder)

    events = default.load_events(execution_id)
    recorded = Counter(e.step_id for e in outcomes(events))
    assert all(count == 1 for count in recorded.values()), recorded
    assert "1" not in recorded  # item 0 died in its body
    starts = {e.step_id for e in events if e.type is EventType.STEP_STARTED}
    assert set(recorded) <= starts  # no outcome without its start
    ran_before = Counter(groupapp.effects())

    ctx = groupapp.squares.run(execution_id=execution_id)
    assert ctx.output == [n * n for n in range(ITEMS)]
    ran_again = Counter(groupapp.effects()) - ran_before
    # exactly the items without a recorded outcome ran again, once each: nothing recorded ran twice
    assert sorted(ran_again) == [n for n in range(ITEMS) if str(n + 1) not in recorded]
    assert set(ran_again.values()) == {1}


def test_a_map_returns_only_once_every_outcome_is_committed(default: Store, folder: Path) -> None:
    execution_id = "crash-after-map"
    run_until_killed("squares_then_crash", execution_id, folder)

    recorded = {e.step_id for e in outcomes(default.load_events(execution_id))}
    assert recorded == {str(n) for n in range(1, ITEMS + 1)}, "the map returned before its outcomes were durable"
    ran_before = Counter(groupapp.effects())
    ctx = groupapp.squares_then_crash.run(execution_id=execution_id)
    assert ctx.output == [n * n for n in range(1, ITEMS + 1)]
    assert Counter(groupapp.effects()) == ran_before  # every item replayed from the log
