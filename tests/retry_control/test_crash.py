"""A step's retries survive its process, on both stores: a run killed while the step waits to retry goes
on, in the next run, with the next attempt after only what is left of the recorded wait. The count of
attempts does not restart and no recorded delay is slept again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from crashapp import retrying
from processes import kill, wait_for

from taskloom.events import EventType
from taskloom.store import Store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


def retries(store: Store, execution_id: str) -> list[int]:
    return [e.data["attempt"] for e in store.load_events(execution_id) if e.type is EventType.STEP_RETRYING]


def test_a_run_killed_while_a_step_waits_to_retry_goes_on_with_the_next_attempt(
    default: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "attempts.log"
    monkeypatch.setenv("RETRY_LOG", str(log))
    env = {
        **os.environ,
        "TASKLOOM_LEASE_SECONDS": "1",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    script = "import crashapp, sys; crashapp.retrying.run(execution_id=sys.argv[1])"
    first = subprocess.Popen([sys.executable, "-c", script, "retried"], env=env)
    try:
        wait_for(lambda: retries(default, "retried") == [1, 2], timeout=60, what="the second retry's wait")
        first.kill()  # during the long wait before attempt 3
        first.wait()
    finally:
        kill(first)
    assert log.read_text().count("attempt") == 2
    ctx = retrying.run(execution_id="retried")  # waits for the dead run's lease, then takes over
    assert ctx.has_failed and isinstance(ctx.output, ConnectionError)
    attempts = log.read_text().splitlines()
    assert len(attempts) == 4  # 1 and 2 before the kill, 3 and 4 after: not 1 to 4 again
    assert attempts[2].split()[1] == str(os.getpid())
    assert retries(default, "retried") == [1, 2, 3]
    waits = [e for e in default.load_events("retried") if e.type is EventType.STEP_RETRYING]
    assert [e.data["delay"] for e in waits] == [0.01, 3.0, 3.0]
