"""`taskloom workers`: which workers are alive, what each serves and holds, when each was last seen.

Real worker processes on both stores; a worker that stops leaves the list at once, a killed one once
its registration is older than the window asked for.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import stop, wait_for

from taskloom.executions import queue_execution
from taskloom.presence import live_workers
from taskloom.store import open_store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
TARGET = "workerapp.flows"


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path),
        "TASKLOOM_TEST_LOG": str(tmp_path / "steps.log"),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = Path(env["TASKLOOM_HOME"]) / f"worker-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", TARGET, "--poll", "0.05", "--grace", "1"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    wait_for(lambda: "running workflows" in log.read_text() or worker.poll() is not None, what="the worker")
    assert worker.poll() is None, log.read_text()
    return worker


def workers_json(env: dict[str, str]) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "workers", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)
    return rows


def test_a_running_worker_is_listed_with_what_it_serves_and_holds(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    assert workers_json(env) == []
    worker = start_worker(env)
    try:
        rows = wait_for(lambda: workers_json(env), what="the worker in the list")
        assert len(rows) == 1
        row = rows[0]
        assert str(row["worker_id"]).split(":")[1] == str(worker.pid)  # host:pid:random
        assert {"counted", "napper", "deadline"} <= set(row["workflows"])  # type: ignore[arg-type]
        assert row["holds"] == []
        busy = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 1, "pause": 30})
        held = wait_for(lambda: workers_json(env)[0]["holds"], what="the worker to hold the execution")
        assert held == [busy]
        human = subprocess.run(
            [sys.executable, "-m", "taskloom", "workers"], env=env, capture_output=True, text=True, timeout=60
        ).stdout
        assert str(row["worker_id"]) in human and f"holds 1: {busy}" in human and "counted" in human
    finally:
        stop(worker)
    assert workers_json(env) == []  # a worker that stops removes itself at once


def test_a_killed_worker_drops_out_once_its_registration_is_older_than_the_window(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    worker = start_worker(env)
    wait_for(lambda: live_workers(store), what="the worker in the list")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert [w.process.split(":")[1] for w in live_workers(store)] == [str(worker.pid)]  # killed: not yet known
    killed_at = time.time()
    wait_for(lambda: time.time() - killed_at > 1.0 or None, timeout=10, what="a second to pass")
    assert live_workers(store, within_seconds=1.0) == []


def test_no_live_workers_says_how_to_start_one(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "taskloom", "workers"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "no live workers" in done.stdout and "taskloom worker MODULE" in done.stdout
