"""Workflow time limits with real processes, on both stores: a deadline that passes while nothing runs
the execution (its process SIGKILLed, or it is paused) is enforced by a worker started later, which
fails the execution with TaskTimeoutError instead of running it; ``taskloom status`` says so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import kill, stop, wait_for
from timeoutapp import awaiting_a_child, awaiting_approval, held, quick

from taskloom import TaskTimeoutError, serde
from taskloom.children import child_id_for
from taskloom.events import EventType
from taskloom.store import ExecutionStatus, Store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


@pytest.fixture
def env(default: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of the test's processes (and of this one): its store, a step log, a gate that
    never opens."""
    monkeypatch.setenv("TIMEOUT_LOG", str(tmp_path / "steps.log"))
    monkeypatch.setenv("TIMEOUT_GATE", str(tmp_path / "gate"))
    return {
        **os.environ,
        "TASKLOOM_LEASE_SECONDS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    }


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    stop(*started)
    kill(*started)


def steps(env: dict[str, str]) -> list[str]:
    path = Path(env["TIMEOUT_LOG"])
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def start_worker(env: dict[str, str], processes: list[subprocess.Popen[bytes]]) -> None:
    log = Path(env["TASKLOOM_HOME"]) / f"worker-{len(processes)}.log"
    with log.open("wb") as err:
        command = [sys.executable, "-m", "taskloom", "worker", "timeoutapp", "--poll", "0.05", "--lease", "1"]
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err))


def worker_log(env: dict[str, str]) -> str:
    return "".join(p.read_text() for p in Path(env["TASKLOOM_HOME"]).glob("worker-*.log"))


def deadline_of(store: Store, execution_id: str) -> float:
    at = store.fix_deadline(execution_id, 10_000)  # the deadline it has: fixed once, never moved
    assert at is not None
    return at


def wait_past(at: float) -> None:
    wait_for(lambda: time.time() > at + 0.1, timeout=60, what="the deadline to pass")


def assert_failed_by_its_deadline(store: Store, execution_id: str) -> None:
    wait_for(
        lambda: store.get_execution(execution_id).status == ExecutionStatus.FAILED,  # type: ignore[union-attr]
        timeout=60,
        what="the worker to fail the execution",
    )
    record = store.get_execution(execution_id)
    assert record is not None
    error = serde.loads(record.output)
    assert isinstance(error, TaskTimeoutError)
    assert "passed its deadline" in str(error)
    failed = [e for e in store.load_events(execution_id) if e.type is EventType.EXECUTION_FAILED]
    assert len(failed) == 1 and failed[0].data["deadline"] == deadline_of(store, execution_id)


def test_a_worker_started_after_the_deadline_fails_a_killed_execution_instead_of_running_it(
    default: Store, env: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    script = "import sys, timeoutapp; timeoutapp.gated.run(execution_id=sys.argv[1])"
    runner = subprocess.Popen([sys.executable, "-c", script, "killed-run"], env=env, stderr=subprocess.PIPE)
    processes.append(runner)  # type: ignore[arg-type]
    wait_for(lambda: "blocked" in steps(env), timeout=60, what="the run to reach its held step")
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    assert default.get_execution("killed-run").status == ExecutionStatus.RUNNING  # type: ignore[union-attr]
    wait_past(deadline_of(default, "killed-run"))  # nothing runs it meanwhile
    start_worker(env, processes)
    assert_failed_by_its_deadline(default, "killed-run")
    assert steps(env) == ["first", "blocked"]  # the worker ran none of it again
    status = subprocess.run(
        [sys.executable, "-m", "taskloom", "status", "killed-run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert "failed" in status.stdout
    assert "TaskTimeoutError" in status.stdout and "passed its deadline" in status.stdout


def test_a_worker_fails_a_paused_execution_whose_deadline_passed(
    default: Store, env: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    ctx = awaiting_approval.run()
    assert ctx.is_paused
    start_worker(env, processes)
    assert_failed_by_its_deadline(default, ctx.execution_id)
    assert steps(env) == ["first"]


def test_a_parent_the_worker_fails_at_its_deadline_has_its_waiting_child_cancelled(
    default: Store, env: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    ctx = awaiting_a_child.run()
    child_id = child_id_for(ctx.execution_id, "1")
    if not ctx.is_paused:  # a slow machine: its run passed the deadline itself (test_driver covers that)
        pytest.skip("the parent's own run passed its deadline before pausing")
    assert default.get_execution(child_id).status == ExecutionStatus.PAUSED  # type: ignore[union-attr]
    start_worker(env, processes)
    assert_failed_by_its_deadline(default, ctx.execution_id)
    wait_for(
        lambda: default.get_execution(child_id).status == ExecutionStatus.CANCELLED,  # type: ignore[union-attr]
        timeout=60,
        what="the worker to cancel the child nothing awaits any more",
    )


def test_a_worker_fails_its_own_running_execution_at_the_deadline(
    default: Store, env: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    start_worker(env, processes)
    wait_for(lambda: "running workflows" in worker_log(env), what="the worker to start")
    execution_id = held.create(status=ExecutionStatus.QUEUED)
    wait_for(lambda: "blocked" in steps(env), what="the worker to reach the held step")
    assert_failed_by_its_deadline(default, execution_id)
    assert steps(env) == ["first", "blocked"]
    assert all(w.poll() is None for w in processes)  # the worker lives on


def test_an_execution_that_finished_in_time_is_left_as_it_is_after_its_deadline(
    default: Store, env: dict[str, str], processes: list[subprocess.Popen[bytes]]
) -> None:
    ctx = quick.run()
    assert ctx.output == "in time"
    wait_past(deadline_of(default, ctx.execution_id))
    paused = awaiting_approval.run()  # once the worker failed this one, it has swept past both deadlines
    start_worker(env, processes)
    assert_failed_by_its_deadline(default, paused.execution_id)
    record = default.get_execution(ctx.execution_id)
    assert record is not None and record.status == ExecutionStatus.COMPLETED
    assert serde.loads(record.output) == "in time"
    assert [e.type for e in default.load_events(ctx.execution_id)][-1] is EventType.EXECUTION_COMPLETED
