"""Workers as real processes: sharing a queue, failover after SIGKILL, durable sleeps waking alone."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskloom.executions import queue_execution
from taskloom.store import open_store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
TARGET = "workerapp.flows"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TASKLOOM_DATABASE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "TASKLOOM_HOME": str(tmp_path),
        "TASKLOOM_TEST_LOG": str(tmp_path / "steps.log"),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }


def start_worker(env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskloom", "worker", TARGET, "--poll", "0.05", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)  # polling with a deadline, not synchronisation by sleep
    raise AssertionError(f"timed out waiting for {what}")


def lines(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["TASKLOOM_TEST_LOG"])
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def stop(*workers: subprocess.Popen[bytes]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


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
    pids = {pid for _, step, pid in lines(env) if step not in completed_at_kill}
    assert str(first.pid) not in pids or len(pids) == 2
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


def test_sigterm_lets_the_running_execution_finish(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    execution = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 4, "pause": 0.2})
    worker = start_worker(env)
    wait_for(lambda: len(lines(env)) >= 1, what="the first step")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert store.get_execution(execution).status == "completed"
    assert len(lines(env)) == 4
