"""Workers as real processes: sharing a queue, failover after SIGKILL, durable sleeps waking alone.

Every test runs once per store (``[sqlite]``, ``[postgres]``): the workers get the store's URL.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import stop, wait_for

from taskloom.events import Event
from taskloom.executions import queue_execution, record_resume
from taskloom.store import Store, open_store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
TARGET = "workerapp.flows"


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of the workers: this test's store (SQLite file or PostgreSQL schema) and step log."""
    return {
        **os.environ,
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path),
        "TASKLOOM_TEST_LOG": str(tmp_path / "steps.log"),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }


def start_worker(env: dict[str, str], *extra: str, poll: str = "0.05") -> subprocess.Popen[bytes]:
    """``taskloom worker`` in a process of its own; its log goes to ``worker-<pid>.log`` in TASKLOOM_HOME."""
    log = Path(env["TASKLOOM_HOME"]) / f"worker-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", TARGET, "--poll", poll, *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    log.rename(log.with_name(f"worker-{worker.pid}.log"))
    return worker


def worker_log(env: dict[str, str], worker: subprocess.Popen[bytes]) -> str:
    return (Path(env["TASKLOOM_HOME"]) / f"worker-{worker.pid}.log").read_text()


def wait_until_ready(env: dict[str, str], worker: subprocess.Popen[bytes]) -> None:
    """Until the worker has imported its workflows and is claiming (it logs which workflows it runs)."""
    wait_for(lambda: "running workflows" in worker_log(env, worker), what="the worker to start")


def lines(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["TASKLOOM_TEST_LOG"])
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_two_workers_share_the_queue_and_run_every_step_exactly_once(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    ids = [queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 3}) for _ in range(200)]
    workers = [start_worker(env, "--concurrency", "4"), start_worker(env, "--concurrency", "4")]
    try:
        wait_for(lambda: all(store.get_execution(i).status == "completed" for i in ids), what="200 executions")
    finally:
        stop(*workers)
    runs = collections.Counter((execution, step) for execution, step, _ in lines(env))
    assert len(runs) == 200 * 3
    assert set(runs.values()) == {1}, [k for k, v in runs.items() if v > 1][:5]
    assert len({pid for _, _, pid in lines(env)}) == 2, "both workers took a share"


def test_a_killed_workers_execution_is_finished_by_another_without_rerunning_steps(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    execution = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 8, "pause": 0.2})
    first = start_worker(env, "--lease", "1")
    wait_for(lambda: len(lines(env)) >= 3, what="three steps on the first worker")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # Step ids are call positions: the workflow's step k (0-based) is step id k+1.
    completed_at_kill = {
        str(int(e.step_id) - 1) for e in store.load_events(execution) if e.type == "step_completed" and e.step_id
    }
    assert len(completed_at_kill) >= 2
    second = start_worker(env, "--lease", "1")
    try:
        wait_for(lambda: store.get_execution(execution).status == "completed", what="failover")
    finally:
        stop(second)
    runs = collections.Counter(step for _, step, _ in lines(env))
    assert sorted(runs) == [str(i) for i in range(8)]
    assert all(runs[step] == 1 for step in completed_at_kill), runs
    # The second worker ran (again) exactly the steps the store had not completed at the kill. (This used
    # to be `first.pid not in pids or len(pids) == 2`, true whichever worker ran what.)
    by_second = {step for _, step, pid in lines(env) if pid == str(second.pid)}
    assert by_second == {str(i) for i in range(8)} - completed_at_kill, (by_second, completed_at_kill)
    assert store.get_execution(execution).output is not None


def test_a_durable_sleep_wakes_with_no_one_resuming_it(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    execution = queue_execution(store, "napper", f"{TARGET}:napper", 1.0)
    worker = start_worker(env)
    try:
        wait_for(lambda: store.get_execution(execution).status == "completed", what="the sleeper to wake")
    finally:
        stop(worker)
    events = store.load_events(execution)
    started = next(e for e in events if e.type == "step_started" and e.name == "sleep")
    completed = next(e for e in events if e.type == "step_completed" and e.name == "sleep")
    assert (completed.timestamp - started.timestamp).total_seconds() >= 0.99
    assert [step for _, step, _ in lines(env)] == ["woke"]


def test_a_pause_deadline_wakes_the_execution_with_no_one_resuming_it(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    execution = queue_execution(store, "deadline", f"{TARGET}:deadline", 1.0)
    worker = start_worker(env, "--poll", "30")  # only the deadline can wake it in time
    try:
        wait_for(lambda: store.get_execution(execution).status == "paused", what="the pause")
        wait_for(lambda: store.get_execution(execution).status == "completed", what="the deadline", timeout=20)
    finally:
        stop(worker)
    events = store.load_events(execution)
    paused = next(e for e in events if e.type == "execution_paused")
    failed = next(e for e in events if e.type == "step_failed" and e.name == "pause")
    assert failed.timestamp.timestamp() >= paused.data["deadline"]
    assert failed.value.__class__.__name__ == "TaskTimeoutError"
    assert events[-1].value == "timed out"


def test_a_resume_before_the_deadline_wins(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    execution = queue_execution(store, "deadline", f"{TARGET}:deadline", 60.0)
    worker = start_worker(env)
    try:
        wait_for(lambda: store.get_execution(execution).status == "paused", what="the pause")
        record_resume(store, execution, "yes", status="queued")
        wait_for(lambda: store.get_execution(execution).status == "completed", what="the resumed run")
    finally:
        stop(worker)
    assert store.load_events(execution)[-1].value == "decided: yes"


def test_sigterm_lets_the_running_execution_finish(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    execution = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 4, "pause": 0.2})
    worker = start_worker(env)
    wait_for(lambda: len(lines(env)) >= 1, what="the first step")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert store.get_execution(execution).status == "completed"
    assert len(lines(env)) == 4


def first_step_written_after(store: Store, execution: str, seq: int) -> Event:
    return wait_for(
        lambda: next(
            (e for e in store.load_events(execution, seq) if e.type in ("step_started", "step_completed")), None
        ),
        what="a step after the failover",
    )


def test_an_idle_worker_takes_over_as_soon_as_a_dead_workers_lease_runs_out(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    # 30 steps of 0.2 s: still running when the idle worker is ready, however slowly it starts on a busy
    # machine (with 2 s of work the first worker once finished before the kill, and nothing was taken over)
    execution = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 30, "pause": 0.2})
    first = start_worker(env, "--lease", "1", poll="10")
    wait_for(lambda: len(lines(env)) >= 2, what="two steps on the first worker")
    idle = start_worker(env, "--lease", "1", poll="10")  # polls rarely: only the lease's expiry wakes it
    try:
        wait_until_ready(env, idle)
        assert store.get_execution(execution).status == "running", "finished before the kill: make it longer"
        last_seq = store.load_events(execution)[-1].seq
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.time()
        first.wait()

        taken_over = first_step_written_after(store, execution, last_seq)
        wait_for(lambda: store.get_execution(execution).status == "completed", what="the execution to finish")
    finally:
        stop(idle)
    # The lease had at most 1 s left at the kill; the margin is for slow machines, far below the poll.
    assert taken_over.timestamp.timestamp() - killed_at < 1.0 + 1.5
    assert {pid for _, _, pid in lines(env)} == {str(first.pid), str(idle.pid)}


@pytest.mark.parametrize("store_kind", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
def test_postgres_wakes_an_idle_worker_as_soon_as_work_is_queued(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    worker = start_worker(env, poll="10")
    try:
        wait_until_ready(env, worker)
        warm_up = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 1})
        wait_for(lambda: store.get_execution(warm_up).status == "completed", what="the first execution")
        queued_at = time.monotonic()
        execution = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 1})
        wait_for(lambda: store.get_execution(execution).status == "completed", what="the woken execution")
        took = time.monotonic() - queued_at
    finally:
        stop(worker)
    assert took < 3.0, f"the idle worker took {took:.2f} s with --poll 10: it was not woken by the queueing"
