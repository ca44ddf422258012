"""Who drives an execution, under faults of the driver: two drivers at once, Ctrl-C, SIGKILL.

A second driver of a leased execution runs no step: it waits for the owner and reports its result.
``taskloom run`` interrupted with Ctrl-C puts the execution back as ``queued`` (a worker takes it at once);
killed with SIGKILL, its lease runs out and a worker, or one ``taskloom recover`` pass, finishes it.
"""

from __future__ import annotations

import signal
import time

import pytest
from faultapp.flows import expected_steps_output, steps
from faultkit import APP, LEASE_SECONDS, Scene, Started, interrupt, lines_of
from processes import wait_for

from taskloom.executions import queue_execution

pytestmark = pytest.mark.integration

STEPS, PAUSE = 8, 0.1
TARGET = f"{APP}:steps"
INPUT = {"steps": STEPS, "pause": PAUSE}


def run_cli(scene: Scene, execution: str, **env: str) -> Started:
    return scene.taskloom("run", TARGET, "--execution-id", execution, "--json", env=env)


def result_of(run: Started) -> dict[str, object]:
    """The result line of ``taskloom run --json``, once the process exited 0."""
    assert run.wait() == 0, run.stderr()
    results = [line for line in lines_of(run) if line.get("type") == "result"]
    assert len(results) == 1, run.stdout()
    return results[0]


def wait_for_effects(scene: Scene, count: int, driver: Started) -> None:
    wait_for(lambda: sum(scene.effects().values()) >= count or not driver.alive(), what=f"{count} steps of the run")
    assert driver.alive(), f"the driver ended early: {driver.stderr()}"


def assert_every_step_once(scene: Scene, execution: str) -> None:
    effects = scene.effects()
    assert effects == {(execution, str(n)): 1 for n in range(STEPS)}, effects


def test_two_taskloom_runs_of_one_execution_run_every_step_once_and_both_print_its_output(scene: Scene) -> None:
    execution = steps.create(INPUT)
    first, second = run_cli(scene, execution), run_cli(scene, execution)
    for run in (first, second):
        result = result_of(run)
        assert (result["status"], result["output"]) == ("completed", expected_steps_output(STEPS)), result
    assert_every_step_once(scene, execution)
    scene.assert_nothing_stuck()


@pytest.mark.parametrize("first", ["worker", "cli"])
def test_a_worker_and_taskloom_run_on_one_execution_run_every_step_once(sqlite_scene: Scene, first: str) -> None:
    scene = sqlite_scene
    if first == "worker":
        execution = queue_execution(scene.store, "steps", TARGET, INPUT)
        worker = scene.worker()
        wait_for_effects(scene, 1, worker)
        run = run_cli(scene, execution)
    else:
        execution = steps.create(INPUT)
        run = run_cli(scene, execution)
        wait_for_effects(scene, 1, run)
        worker = scene.worker()  # the run renews its lease: the worker must leave the execution alone
    result = result_of(run)
    assert (result["status"], result["output"]) == ("completed", expected_steps_output(STEPS)), result
    assert scene.status(execution) == "completed"
    assert_every_step_once(scene, execution)
    assert worker.alive()
    scene.assert_nothing_stuck()


def test_ctrl_c_on_taskloom_run_queues_the_execution_and_a_worker_takes_it_at_once(scene: Scene) -> None:
    long_lease = 30.0  # a worker that had to wait out the interrupted run's lease would take this long
    execution = steps.create(INPUT)
    run = run_cli(scene, execution, TASKLOOM_LEASE_SECONDS=str(long_lease))
    wait_for_effects(scene, 3, run)
    assert interrupt(run, signal.SIGINT) == 130, run.stderr()
    assert f"--execution-id {execution}" in run.stderr()
    snapshot = scene.snapshot([execution])
    assert scene.status(execution) == "queued"
    worker = scene.worker(lease=long_lease)
    ready = time.monotonic()
    scene.wait_until_settled([execution], timeout=long_lease)
    took = time.monotonic() - ready
    assert scene.status(execution) == "completed"
    assert scene.output(execution) == expected_steps_output(STEPS)
    scene.assert_no_completed_step_ran_again(snapshot)
    assert {label for _, label in scene.effects()} == {str(n) for n in range(STEPS)}
    assert worker.alive()
    scene.assert_nothing_stuck()
    assert took < long_lease / 2, f"the worker took {took:.1f} s: it waited for the lease instead of the queue"


@pytest.mark.parametrize("finisher", ["worker", "recover"])
def test_a_killed_taskloom_run_is_finished_by_a_worker_or_one_recover_pass(sqlite_scene: Scene, finisher: str) -> None:
    scene = sqlite_scene
    execution = steps.create(INPUT)
    run = run_cli(scene, execution)
    wait_for_effects(scene, 3, run)
    assert interrupt(run, signal.SIGKILL) == -signal.SIGKILL
    snapshot = scene.snapshot([execution])
    assert scene.status(execution) == "running"  # nobody could say otherwise: the lease must run out
    if finisher == "worker":
        worker = scene.worker()
        scene.wait_until_settled([execution])
        assert worker.alive()
    else:

        def lease_expired() -> bool:
            record = scene.store.get_execution(execution)
            return record is not None and (record.lease_expires_at or 0) < time.time()

        wait_for(lease_expired, timeout=LEASE_SECONDS + 30, what="the killed run's lease to run out")
        recover = scene.taskloom("recover", APP)
        assert recover.wait() == 0, recover.stderr()
    assert scene.status(execution) == "completed"
    assert scene.output(execution) == expected_steps_output(STEPS)
    scene.assert_no_completed_step_ran_again(snapshot)
    assert {label for _, label in scene.effects()} == {str(n) for n in range(STEPS)}
    scene.assert_nothing_stuck()
