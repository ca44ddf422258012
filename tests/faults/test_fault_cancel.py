"""Cancel from another process while two branches run a fast loop of steps.

After ``taskloom cancel`` returns, each branch may finish the step it is in, and nothing new starts:
at most one more step per branch shows up in the side-effect log, however long the driver keeps going.
"""

from __future__ import annotations

import collections
import signal

import pytest
from faultapp.flows import spinning
from faultkit import APP, Scene, Started, interrupt
from processes import wait_for

from taskloom.executions import queue_execution

pytestmark = pytest.mark.integration

#: far more steps than the test lets run: the loop must be stopped by the cancel, not by its end
COUNT = 100_000


def per_branch(scene: Scene, execution: str) -> collections.Counter[str]:
    """Branch (``a`` or ``b``) -> how many step bodies of that branch ran so far."""
    counts: collections.Counter[str] = collections.Counter()
    for (owner, label), runs in scene.effects().items():
        if owner == execution:
            counts[label[0]] += runs
    return counts


@pytest.mark.parametrize("driver", ["worker", "taskloom run"])
def test_after_cancel_returns_each_branch_finishes_at_most_one_more_step(sqlite_scene: Scene, driver: str) -> None:
    scene = sqlite_scene
    running: Started
    if driver == "worker":
        execution = queue_execution(scene.store, "spinning", f"{APP}:spinning", {"count": COUNT})
        running = scene.worker("--grace", "30")
    else:
        execution = spinning.create({"count": COUNT})
        running = scene.taskloom("run", f"{APP}:spinning", "--execution-id", execution)
    wait_for(
        lambda: min(per_branch(scene, execution)[b] for b in "ab") >= 5 or not running.alive(),
        what="both branches under way",
    )
    assert running.alive(), running.stderr()

    cancel = scene.taskloom("cancel", execution)
    assert cancel.wait() == 0, cancel.stderr()
    at_cancel = per_branch(scene, execution)
    if driver == "worker":
        # A graceful stop waits for the execution the worker still runs (up to --grace): after it,
        # nothing of this execution can run anywhere.
        assert interrupt(running, signal.SIGTERM) == 0, running.stderr()
    else:
        running.wait()
    after = per_branch(scene, execution)

    assert scene.status(execution) == "cancelled"
    more = {branch: after[branch] - at_cancel[branch] for branch in "ab"}
    assert all(count <= 1 for count in more.values()), f"steps after the cancel returned: {more}"
    scene.assert_nothing_stuck()
