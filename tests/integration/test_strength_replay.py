"""A durable sleep killed mid-way sleeps only what is left when run again (issue 14).

The older test interrupts in-process and checks only that the re-run did not wake early. Here a real
process is killed with SIGKILL near the end of a 6 s sleep, and a new process finishes the execution:
it must wake at the recorded time (bounded above), not sleep the whole 6 s again. The lease is short, so
the new process takes over from the dead one within a second (with the default 10 s lease it would wait
for the lease and wake late for that reason alone).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from processes import wait_for

from taskloom.events import Event, EventType
from taskloom.store import default_store

pytestmark = pytest.mark.integration

SLEEP = 6.0
#: the first process is killed when this much of the sleep is left
LEFT_AT_KILL = 1.0
#: the killed process's lease runs out this soon, so the re-run does not wait long to take over
LEASE_SECONDS = 1.0
#: how late past the recorded wake-up time the step may complete (a full restart is SLEEP late)
LATE_BOUND = 2.5

FLOW = f"""
from taskloom import WorkflowExecutionContext, workflow
from taskloom.tasks import sleep

@workflow
async def napper(ctx: WorkflowExecutionContext[None]) -> str:
    await sleep({SLEEP})
    return "awake"
"""


def sleep_events(execution_id: str, kind: EventType) -> list[Event]:
    return [e for e in default_store().load_events(execution_id) if e.type is kind and e.name == "sleep"]


def test_a_sleep_killed_with_sigkill_wakes_at_its_recorded_time_when_run_again(
    workflow_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "napflow.py").write_text(textwrap.dedent(FLOW))
    monkeypatch.syspath_prepend(str(tmp_path))
    from napflow import napper  # type: ignore[import-not-found]

    env = {
        **workflow_env,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), workflow_env["PYTHONPATH"]]),
        "TASKLOOM_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    command = [sys.executable, "-m", "helpers.run", "napflow:napper", "run"]
    execution_id = napper.create()

    first = subprocess.Popen([*command, execution_id], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        started = wait_for(lambda: sleep_events(execution_id, EventType.STEP_STARTED), 30, "the sleep to start")
        until = float(started[0].data["until"])
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        wait_for(lambda: time.time() >= until - LEFT_AT_KILL, SLEEP + 30, "the sleep to be nearly over")
    finally:
        first.kill()
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    assert not sleep_events(execution_id, EventType.STEP_COMPLETED), "killed too late: the sleep had finished"

    rerun_started = time.time()
    second = subprocess.run([*command, execution_id], env=env, capture_output=True, text=True, timeout=60)
    rerun_elapsed = time.time() - rerun_started
    assert second.returncode == 0, second.stderr
    assert '"status": "completed"' in second.stdout

    assert len(sleep_events(execution_id, EventType.STEP_STARTED)) == 1  # the recorded wake-up time was kept
    completed = sleep_events(execution_id, EventType.STEP_COMPLETED)
    assert len(completed) == 1
    woke = completed[0].timestamp.timestamp()
    assert woke >= until - 0.002  # not early (stored timestamps are rounded)
    assert woke - until < LATE_BOUND, f"woke {woke - until:.1f}s after the recorded time: the sleep restarted"
    left = max(0.0, until - rerun_started)
    assert rerun_elapsed < left + LATE_BOUND + 2.0, f"the re-run took {rerun_elapsed:.1f}s with {left:.1f}s left"
