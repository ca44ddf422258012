"""PostgreSQL faults caused for real: a server restart and every connection cut while workers run, and
an outage longer than the store's retry budget under ``wf.run()``.

Three ``taskloom worker`` processes run twelve executions of ten steps each; mid-run the database goes
away under them. Every execution must end with the right output, no step the store had completed may run
again, nothing may be left running or queued, and the workers must carry on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from faultapp.flows import expected_steps_output, guarded
from faultkit import APP, LEASE_SECONDS, Scene, build_scene, end_scene
from pgserver import PostgresServer, find_bindir, running_postgres
from processes import wait_for

from taskloom.events import EventType
from taskloom.executions import queue_execution

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

EXECUTIONS, STEPS, PAUSE = 12, 10, 0.1
WORKERS = 3


def start_work(scene: Scene) -> list[str]:
    """Three workers (four executions at once each), then twelve executions for them."""
    for worker in [scene.worker("--concurrency", "4", ready=False) for _ in range(WORKERS)]:
        scene.wait_ready(worker)
    return [
        queue_execution(scene.store, "steps", f"{APP}:steps", {"steps": STEPS, "pause": PAUSE})
        for _ in range(EXECUTIONS)
    ]


def effects_reach(scene: Scene, count: int) -> Callable[[], bool]:
    return lambda: sum(scene.effects().values()) >= count


def check_all_finished(scene: Scene, ids: list[str], snapshot: dict[tuple[str, str], int]) -> None:
    scene.wait_until_settled(ids)
    assert {execution: scene.status(execution) for execution in ids} == dict.fromkeys(ids, "completed")
    assert all(scene.output(execution) == expected_steps_output(STEPS) for execution in ids)
    scene.assert_no_completed_step_ran_again(snapshot)
    effects = scene.effects()
    assert {key for key in effects} == {(execution, str(n)) for execution in ids for n in range(STEPS)}
    scene.assert_nothing_stuck()
    assert all(worker.alive() for worker in scene.workers()), "a worker died"


def first_step_recorded_after(scene: Scene, ids: list[str], moment: float) -> float:
    """The timestamp of the first step completion recorded at or after ``moment`` (Unix seconds)."""

    def earliest() -> float | None:
        stamps = [
            event.timestamp.timestamp()
            for execution in ids
            for event in scene.store.load_events(execution)
            if event.type is EventType.STEP_COMPLETED and event.timestamp.timestamp() >= moment
        ]
        return min(stamps) if stamps else None

    return wait_for(earliest, timeout=60, what="a step recorded after the fault")


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this test alone: restarting the session's would break other tests."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL server binaries not found (initdb)")
    with running_postgres() as server:
        yield server


def test_workers_finish_every_execution_across_a_postgres_restart(
    own_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = build_scene(own_server.url(), tmp_path, monkeypatch)
    try:
        ids = start_work(scene)
        wait_for(effects_reach(scene, 20), what="20 steps before the restart")
        own_server.restart()
        answering = time.time()
        snapshot = scene.snapshot(ids)
        assert sum(scene.effects().values()) < EXECUTIONS * STEPS, "the restart came after the work was done"
        resumed = first_step_recorded_after(scene, ids, answering)
        check_all_finished(scene, ids, snapshot)
    finally:
        end_scene(scene)
    # the contract: in-flight work resumes within the lease time + 2 s of the database answering again
    assert resumed - answering < LEASE_SECONDS + 2, f"first step {resumed - answering:.2f} s after the restart"


@pytest.mark.parametrize("store_kind", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_workers_finish_every_execution_when_every_connection_is_terminated_twice(
    scene: Scene, pg_server: PostgresServer
) -> None:
    ids = start_work(scene)
    wait_for(effects_reach(scene, 15), what="15 steps before the first cut")
    assert pg_server.terminate_connections() > 0
    wait_for(effects_reach(scene, 50), what="50 steps before the second cut")
    assert pg_server.terminate_connections() > 0
    cut = time.time()
    snapshot = scene.snapshot(ids)
    assert sum(scene.effects().values()) < EXECUTIONS * STEPS, "the cuts came after the work was done"
    resumed = first_step_recorded_after(scene, ids, cut)
    check_all_finished(scene, ids, snapshot)
    assert resumed - cut < LEASE_SECONDS + 2, f"first step {resumed - cut:.2f} s after the cut"


def test_postgres_down_past_the_retry_budget_stops_the_run_without_a_verdict_and_a_rerun_finishes(
    own_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = build_scene(own_server.url(), tmp_path, monkeypatch)
    try:
        execution = guarded.create()
        driver = scene.drive("faultapp.flows:guarded", "run", execution, env={"TASKLOOM_STORE_RETRY_SECONDS": "1"})
        wait_for(lambda: "1:waiting" in scene.markers(execution) or not driver.alive(), what="step 1 at the gate")
        assert driver.alive(), driver.stderr()
        own_server.shut_down()
        try:
            scene.gate.touch()
            report = driver.report()
        finally:
            own_server.start_again()
        assert driver.process.returncode == 1, report
        assert report["error"] == "StoreUnavailableError", report
        assert f"127.0.0.1:{own_server.port}" in report["message"], report["message"]
        assert not [m for m in scene.markers(execution) if m.startswith("except")], "a store error reached the workflow"
        snapshot = scene.snapshot([execution])
        assert set(snapshot) == {(execution, "0")}
        assert scene.status(execution) in ("running", "queued")
        outcomes = (EventType.EXECUTION_COMPLETED, EventType.EXECUTION_FAILED, EventType.EXECUTION_CANCELLED)
        assert not [e for e in scene.store.load_events(execution) if e.type in outcomes]

        rerun = scene.drive("faultapp.flows:guarded", "run", execution).report()
        assert rerun == {"execution_id": execution, "status": "completed", "output": 5}, rerun
        scene.assert_no_completed_step_ran_again(snapshot)
        scene.assert_nothing_stuck()
    finally:
        end_scene(scene)
