"""A workflow process killed with SIGKILL loses nothing: a new process finishes the execution by id.

Each step of ``helpers.crashflow`` writes ``<label> start|done <pid>`` to a log, so the test sees which
steps ran in which process. Gated steps hold the first process until it is killed. A step that was
running at the kill may run again; a step the store had recorded as completed must not.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from taskloom.events import Event, EventType
from taskloom.store import default_store

pytestmark = pytest.mark.integration

MODULE = "helpers.crashflow"


def log_lines(env: dict[str, str]) -> list[tuple[str, str, int]]:
    path = Path(env["CRASH_LOG"])
    if not path.exists():
        return []
    fields = (line.split() for line in path.read_text().splitlines())
    return [(label, phase, int(pid)) for label, phase, pid in fields]


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the workflow process ended before {what}: {process.stderr.read()}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling with a deadline


def start(env: dict[str, str], workflow: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "helpers.run", f"{MODULE}:{workflow}", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert process.stderr is not None
    process.stderr.close()
    assert process.stdout is not None
    process.stdout.close()


def labels(events: list[Event]) -> dict[str, str]:
    """step id -> the label its task was called with (from the recorded arguments)."""
    found = {}
    for event in events:
        if event.type is EventType.STEP_STARTED and event.raw_value is not None and event.step_id:
            args, _ = event.value
            first = args[0]
            found[event.step_id] = first[0] if isinstance(first, tuple) else first
    return found


def completed_labels(execution_id: str) -> set[str]:
    events = default_store().load_events(execution_id)
    names = labels(events)
    return {names[e.step_id] for e in events if e.type is EventType.STEP_COMPLETED and e.step_id in names}


@pytest.fixture
def crash_env(workflow_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**workflow_env, "CRASH_LOG": str(tmp_path / "steps.log"), "CRASH_GATE": str(tmp_path / "gate")}


def kill_then_rerun(
    env: dict[str, str], workflow: str, execution_id: str, ready: Callable[[list[tuple[str, str, int]]], bool]
) -> tuple[set[str], dict[str, Any], int, int]:
    """Run the execution in a process, SIGKILL it once ``ready(log)``, then finish it in a second one.

    Returns the labels the store had completed at the kill, the second process's report and both pids.
    """
    first = start(env, workflow, "run", execution_id)
    wait_for(lambda: ready(log_lines(env)), f"{workflow} to reach the kill point", first)
    kill(first)
    at_kill = completed_labels(execution_id)
    assert default_store().get_execution(execution_id).status == "running"  # type: ignore[union-attr]
    Path(env["CRASH_GATE"]).touch()
    second = start(env, workflow, "run", execution_id)
    report = finish(second)
    return at_kill, report, first.pid, second.pid


def test_sequential_workflow_killed_after_step_three_finishes_without_rerunning_steps(
    crash_env: dict[str, str],
) -> None:
    from helpers.crashflow import six_steps

    execution_id = six_steps.create({"gate_from": 4})
    at_kill, report, first_pid, second_pid = kill_then_rerun(
        crash_env, "six_steps", execution_id, lambda log: any(line[:2] == ("step3", "done") for line in log)
    )
    assert report["status"] == "completed"
    assert report["output"] == [f"step{n} ok" for n in range(1, 7)]
    assert {"step1", "step2"} <= at_kill  # step 3 started only after step 2 was durable
    log = log_lines(crash_env)
    rerun = {label for label, _, pid in log if pid == second_pid}
    assert not rerun & at_kill, f"completed steps ran again: {rerun & at_kill}"
    assert {label for label, phase, _ in log if phase == "done"} == {f"step{n}" for n in range(1, 7)}
    assert {label for label, _, pid in log if pid == first_pid} >= {"step1", "step2", "step3"}
    assert "step5" not in {label for label, _, pid in log if pid == first_pid}
    done_counts = collections.Counter(label for label, phase, _ in log if phase == "done")
    assert all(done_counts[label] == 1 for label in at_kill)
    assert six_steps.status(execution_id).output == report["output"]


def test_workflow_killed_during_a_map_finishes_only_the_unfinished_items(crash_env: dict[str, str]) -> None:
    from helpers.crashflow import gated_map

    execution_id = gated_map.create()

    def ready(log: list[tuple[str, str, int]]) -> bool:
        done = {label for label, phase, _ in log if phase == "done"}
        started = {label for label, phase, _ in log if phase == "start"}
        return {"item0", "item1", "item2"} <= done and {"item3", "item4", "item5"} <= started

    at_kill, report, _, second_pid = kill_then_rerun(crash_env, "gated_map", execution_id, ready)
    assert report["status"] == "completed"
    assert report["output"] == [f"item{n} ok" for n in range(6)]
    assert "prepare" in at_kill
    assert not at_kill & {"item3", "item4", "item5"}  # they were waiting at the gate
    rerun = {label for label, _, pid in log_lines(crash_env) if pid == second_pid}
    assert not rerun & at_kill, f"completed steps ran again: {rerun & at_kill}"
    assert rerun >= {"item3", "item4", "item5"}


def test_workflow_killed_during_a_parallel_finishes_only_the_unfinished_branches(
    crash_env: dict[str, str],
) -> None:
    from helpers.crashflow import gated_parallel

    execution_id = gated_parallel.create()

    def ready(log: list[tuple[str, str, int]]) -> bool:
        done = {label for label, phase, _ in log if phase == "done"}
        started = {label for label, phase, _ in log if phase == "start"}
        return {"branch-a", "branch-b"} <= done and {"branch-c", "branch-d"} <= started

    at_kill, report, _, second_pid = kill_then_rerun(crash_env, "gated_parallel", execution_id, ready)
    assert report["status"] == "completed"
    assert report["output"] == ["branch-a ok", "branch-b ok", "branch-c ok", "branch-d ok"]
    assert "prepare" in at_kill
    rerun = {label for label, _, pid in log_lines(crash_env) if pid == second_pid}
    assert not rerun & at_kill, f"completed steps ran again: {rerun & at_kill}"
    assert rerun >= {"branch-c", "branch-d"}
    events = default_store().load_events(execution_id)
    completed_ids = [e.step_id for e in events if e.type is EventType.STEP_COMPLETED]
    assert sorted(completed_ids, key=str) == ["1", "2", "3", "4", "4.1", "5"]
    assert len(completed_ids) == len(set(completed_ids))  # no step completed twice
