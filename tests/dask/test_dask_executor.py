"""Step bodies and instances on a real Dask cluster (taskloom.executors.dask), the records in taskloom's store.

One LocalCluster of two worker processes serves the module (conftest.py). The bodies, in ``daskapp.flows``,
report their pid and write ``<what> <item> <pid>`` lines to runs.log, so a test sees where each ran and how
often. The driver runs in this process, or (for the crash) in a process of its own that is SIGKILLed.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from processes import kill, wait_for

from taskloom import Session
from taskloom.control import TaskControl, TaskControlHandler, set_task_control_handler
from taskloom.events import EventType
from taskloom.secret_store import default_secret_store
from taskloom.store import default_store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent  # daskapp's directory, on the path of a driver started here
API_KEY = "sk-live-7f3a9c1e5b2d4a6f"


def worker_pids(client: Any) -> set[int]:
    return set(client.run(os.getpid).values())


def completed_steps(execution_id: str) -> list[str]:
    events = default_store().load_events(execution_id)
    return [e.step_id for e in events if e.type is EventType.STEP_COMPLETED and e.step_id]


def test_sequential_map_parallel_and_graph_bodies_run_on_dask_workers_and_are_recorded(dask_client: Any) -> None:
    from daskapp import flows

    ctx = flows.spread.run([1, 2, 3])

    assert ctx.status == "completed", ctx.output
    pids = worker_pids(dask_client)
    out = ctx.output
    ran_in = {out["first"][1], *(pid for _, pid in out["mapped"]), *(pid for _, pid in out["parallel"])}
    ran_in |= {out["graph"][1], out["graph"][0][1]}
    assert os.getpid() not in ran_in
    assert ran_in <= pids
    assert [value for value, _ in out["mapped"]] == [2, 4, 6]
    # every body's outcome is in the store, and a replay answers from it without running anything
    assert len(completed_steps(ctx.execution_id)) == 1 + 3 + 2 + 2
    runs = flows.lines()
    again = flows.spread.run(execution_id=ctx.execution_id)
    assert again.output == out
    assert flows.lines() == runs


def test_retries_timeouts_fallback_and_rollback_behave_as_locally(dask_client: Any) -> None:
    from daskapp import flows

    ctx = flows.policies.run(None)

    assert ctx.status == "completed", ctx.output
    out = ctx.output
    assert out["retried"] == "f ok"
    assert out["failed"] == "KeyError 'item 7'"
    # the fallback ran in the driver; the timed-out body on its worker was told to stop, and did
    assert out["timed_out"] == f"fallback after {os.getpid()}"
    wait_for(lambda: ["stopped", "slow"] in [line[:2] for line in flows.lines()], 30, "the slow body to stop")
    lines = flows.lines()
    attempts = [int(pid) for what, name, pid in lines if (what, name) == ("attempt", "f")]
    assert len(attempts) == 3 and set(attempts) <= worker_pids(dask_client)
    assert [line[:2] for line in lines if line[0] == "rollback"] == [["rollback", "7"]]
    assert int(next(line[2] for line in lines if line[0] == "rollback")) == os.getpid()
    events = default_store().load_events(ctx.execution_id)
    retries = [e for e in events if e.type is EventType.STEP_RETRYING]
    assert [e.data["attempt"] for e in retries] == [1, 2]
    assert "ValueError: f: not yet" in retries[0].data["error"]
    assert any(e.type is EventType.STEP_FALLBACK and "TaskTimeoutError" in e.data["error"] for e in events)
    assert any(e.type is EventType.STEP_ROLLBACK for e in events)


def test_a_failed_parallel_branch_tells_its_sibling_on_a_dask_worker_to_stop(dask_client: Any) -> None:
    from daskapp import flows

    ctx = flows.cancelled_branch.run(None)

    assert ctx.status == "completed" and ctx.output == "sibling failed"
    wait_for(lambda: ["stopped", "branch"] in [line[:2] for line in flows.lines()], 30, "the branch to stop")
    events = default_store().load_events(ctx.execution_id)
    assert not any(e.step_id == "1" and e.type is EventType.STEP_COMPLETED for e in events)  # cancelled: no outcome


def test_an_instance_on_dask_reports_progress_and_logs_back_and_sees_stop(dask_client: Any) -> None:
    from daskapp import flows

    with Session() as session:
        instance = flows.reporter.instance()
        future = instance.start(3)
        wait_for(lambda: future.progress == 50, 30, "the progress the worker reported")
        assert future.status == "running"
        instance.stop()
        outcome, pid = future.result(timeout=30)
    assert session is not None
    assert outcome == "stopped"
    assert pid in worker_pids(dask_client)
    control = instance.control
    assert control.status == "half way"
    assert [(r.level, r.message, r.extra) for r in control.logs] == [("warning", "reporter begins", {"step": 1})]


def test_secrets_reach_the_body_on_dask_and_stay_masked_in_what_comes_back(
    dask_client: Any, isolated_store: str
) -> None:
    from daskapp import flows

    default_secret_store().set("API_KEY", API_KEY)

    class SlowLogHandler(TaskControlHandler):
        """A handler that takes its time over a log: the step's progress, replayed after it, comes late."""

        def log(self, task_control: TaskControl, message: str, level: str, **extra_data: Any) -> None:
            threading.Event().wait(0.5)  # the slowness under test, not a synchronisation

    set_task_control_handler(SlowLogHandler())
    try:
        ctx = flows.secretive.run(None)
    finally:
        set_task_control_handler(None)

    assert ctx.status == "completed", ctx.output
    (signed, pid), refused = ctx.output
    assert signed == "doc signed by ***"  # the body had the value; the result is masked, as locally
    assert refused == "the API refused ***"
    assert pid in worker_pids(dask_client)
    events = default_store().load_events(ctx.execution_id)
    assert [e.data["message"] for e in events if e.type is EventType.STEP_LOG] == ["signing doc with ***"]
    # the worker's TaskControl calls are recorded on the step before its outcome, even behind a slow handler
    kinds = [e.type for e in events if e.step_id == "1"]
    assert kinds[-3:] == [EventType.STEP_LOG, EventType.STEP_PROGRESS, EventType.STEP_COMPLETED], kinds
    progress = next(e for e in events if e.type is EventType.STEP_PROGRESS)
    assert progress.data == {"progress": 50.0, "status": "half signed with ***"}
    database = Path(isolated_store.removeprefix("sqlite:///"))
    for path in database.parent.glob(database.name + "*"):
        assert API_KEY.encode() not in path.read_bytes(), path


def test_a_driver_killed_mid_map_is_replayed_without_rerunning_completed_items(
    dask_client: Any, app_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daskapp import flows

    monkeypatch.setenv("TASKLOOM_LEASE_SECONDS", "1")  # the dead driver's lease passes soon
    address = dask_client.scheduler.address.replace("tcp://", "dask://")
    env = {**os.environ, "TASKLOOM_EXECUTOR": address, "PYTHONPATH": f"{HERE}{os.pathsep}{HERE.parent}"}
    code = "from daskapp.flows import hold; hold.run(None, execution_id='crash-1')"
    driver = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:

        def recorded() -> bool:
            assert driver.poll() is None, driver.communicate()[1].decode()
            return len(completed_steps("crash-1")) >= 5

        wait_for(recorded, 30, "items 0-4 to be recorded by the first driver")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        kill(driver)
        assert driver.stderr is not None
        driver.stderr.close()
    at_kill = set(completed_steps("crash-1"))
    assert at_kill == {"1", "2", "3", "4", "5"}  # the map's items 0-4; item 5 waits for "release"
    (app_dir / "release").touch()  # the abandoned body of item 5 finishes, and is dropped

    ctx = flows.hold.run(execution_id="crash-1")

    assert ctx.status == "completed", ctx.output
    assert ctx.output == [0, 10, 20, 30, 40, 50]
    done = collections.Counter(int(item) for what, item, _ in flows.lines() if what == "done")
    assert all(done[item] == 1 for item in range(5)), done  # completed before the crash: never again
    assert done[5] >= 1
    assert {int(pid) for what, _, pid in flows.lines() if what == "done"} <= worker_pids(dask_client)


def test_a_dask_worker_killed_mid_map_is_a_failed_attempt_retried_and_nothing_completed_runs_twice(
    dask_client: Any, app_dir: Path
) -> None:
    """Dask's scheduler (``allowed-failures`` at its default, 3) starts item 0 again on the other worker;
    that re-run refuses to run the body, and taskloom's retry (a new Dask task) runs it once more."""
    from daskapp import flows

    handle = flows.survive.start(6)
    started = wait_for(
        lambda: next((line for line in flows.lines() if line[:2] == ["start", "0"]), None), 30, "item 0 to start"
    )
    victim = int(started[2])
    assert victim in worker_pids(dask_client)
    (app_dir / "killed").touch()  # item 0's next attempt returns at once
    os.kill(victim, signal.SIGKILL)

    assert handle.result(timeout=30) == [100 + item for item in range(6)]
    lines = flows.lines()
    done = collections.Counter(int(item) for what, item, _ in lines if what == "done")
    assert done == {item: 1 for item in range(6)}, lines
    starts = collections.Counter(int(item) for what, item, _ in lines if what == "start")
    assert starts[0] == 2, lines  # the attempt on the killed worker, and its retry elsewhere
    assert victim not in {int(pid) for what, item, pid in lines if (what, item) == ("done", "0")}
    events = default_store().load_events(handle.execution_id)
    retries = [e for e in events if e.type is EventType.STEP_RETRYING]
    assert [e.step_id for e in retries] == ["1"], retries  # item 0's step, once
    assert "the Dask worker running this attempt was lost" in retries[0].data["error"]
