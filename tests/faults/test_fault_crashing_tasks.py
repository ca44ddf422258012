"""A task that ends the process running it (``sys.exit``, ``os._exit``) on workers, next to good work.

Each exit counts as a crash of the execution; after ``max_recovery_attempts`` the poison execution ends
``failed`` with ExecutionCrashedError instead of taking down worker after worker, while the good
executions complete and some worker stays alive.
"""

from __future__ import annotations

import pytest
from faultapp.flows import expected_steps_output
from faultapp.poison import MAX_RECOVERY_ATTEMPTS, poison
from faultkit import Scene

from taskloom.errors import ExecutionCrashedError
from taskloom.executions import queue_execution

pytestmark = pytest.mark.integration

MODULE = "faultapp.poison"
WORKERS, GOOD, STEPS = 4, 6, 4


@pytest.mark.parametrize("how", ["sys.exit", "os._exit"])
def test_a_step_that_exits_its_process_fails_its_execution_after_max_recovery_attempts(
    sqlite_scene: Scene, how: str
) -> None:
    scene = sqlite_scene
    for worker in [scene.worker("--concurrency", "2", module=MODULE, ready=False) for _ in range(WORKERS)]:
        scene.wait_ready(worker)
    bad = queue_execution(scene.store, "poison", f"{MODULE}:poison", how)
    good = [
        queue_execution(scene.store, "steps", f"{MODULE}:steps", {"steps": STEPS, "pause": 0.05}) for _ in range(GOOD)
    ]
    scene.wait_until_settled([bad, *good])

    assert scene.status(bad) == "failed"
    error = poison.status(bad).output
    assert isinstance(error, ExecutionCrashedError), repr(error)
    # the first run and max_recovery_attempts recoveries each ended their process; then no more
    attempts = scene.markers(bad).count("1:dying")
    assert attempts == MAX_RECOVERY_ATTEMPTS + 1, f"the poison step ran {attempts} times"
    assert f"{attempts} times" in str(error) and f"max_recovery_attempts is {MAX_RECOVERY_ATTEMPTS}" in str(error)
    assert scene.effects()[(bad, "0")] == 1, "the completed step before the poison one ran again"

    assert [scene.status(execution) for execution in good] == ["completed"] * GOOD
    assert all(scene.output(execution) == expected_steps_output(STEPS) for execution in good)
    assert all(scene.effects()[(execution, str(n))] >= 1 for execution in good for n in range(STEPS))
    assert any(worker.alive() for worker in scene.workers()), "the poison execution took every worker down"
    scene.assert_nothing_stuck()
