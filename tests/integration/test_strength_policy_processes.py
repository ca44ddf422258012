"""A timed-out attempt must not keep its process alive (issue 14).

The attempt's thread cannot be killed, so a timed-out attempt is left running; it must run on a daemon
thread of its own, not on a pool whose threads the interpreter joins at exit. Each case runs in a real
subprocess whose task sleeps 10 s under a 0.2 s timeout: the process must report the timeout and exit
well before the sleep ends (bound: 5 s, generous for a loaded machine; the broken behaviour takes 10 s).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TASK_SECONDS = 10.0
TIMEOUT = 0.2
EXIT_BOUND = 5.0

PRELUDE = f"""
import time
from taskloom import Session, TaskTimeoutError, WorkflowExecutionContext, task, workflow

@task(name="sleeps", timeout={TIMEOUT})
def sleeps() -> None:
    time.sleep({TASK_SECONDS})
"""

SCRIPTS = {
    "workflow step": """
@workflow
async def flow(ctx: WorkflowExecutionContext[None]) -> str:
    try:
        await sleeps()
    except TaskTimeoutError:
        return "timed out"
    return "finished"

print(flow.run().output)
""",
    "direct call": """
try:
    sleeps()
except TaskTimeoutError:
    print("timed out")
""",
    "instance": """
with Session():
    future = sleeps.instance().start()
    try:
        future.result(30)
    except TaskTimeoutError:
        print("timed out")
""",
}


@pytest.mark.parametrize("script", list(SCRIPTS.values()), ids=list(SCRIPTS))
def test_a_timed_out_attempt_does_not_keep_the_process_from_exiting(script: str, workflow_env: dict[str, str]) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PRELUDE + script],
        cwd=ROOT,  # the taskloom next to these tests, also when they run in a copy of the tree
        env=workflow_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "timed out", done.stdout + done.stderr
    assert elapsed < EXIT_BOUND, f"the process took {elapsed:.1f}s to exit; the attempt sleeps {TASK_SECONDS}s"
