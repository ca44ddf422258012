"""Records say where they were made in other processes too: a ``taskloom worker`` running a workflow (its
stderr read back), and the ``local-process`` backend's worker processes (a file the task logs to there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Collected
from obsapp.tasks import log_to, report
from processes import stop, wait_for

from taskloom import Session
from taskloom.executions import queue_execution
from taskloom.store import open_store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent


def test_a_worker_process_logs_each_record_with_its_execution_step_and_task(store_url: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    store = open_store(store_url)
    execution = queue_execution(store, "shouted", "obsapp.flows:shouted", "hey")
    log = tmp_path / "worker.log"
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "obsapp.flows", "--poll", "0.05"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for(lambda: store.get_execution(execution).status == "completed", what="the execution")  # type: ignore[union-attr]
    finally:
        stop(worker)
        store.close()
    lines = [line for line in log.read_text().splitlines() if line.startswith("ORIGIN ")]
    assert lines == [
        f"ORIGIN execution={execution} workflow=shouted step=None task=None begin",
        f"ORIGIN execution={execution} workflow=shouted step=1 task=shout shouting hey",
        f"ORIGIN execution={execution} workflow=shouted step=None task=None end",
    ]


@pytest.fixture
def process_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKLOOM_BACKEND", "local-process")


@pytest.mark.usefixtures("process_backend")
def test_records_made_in_a_process_backend_worker_carry_the_task_and_instance(tmp_path: Path) -> None:
    path = tmp_path / "child.log"
    with Session():
        instance = log_to.instance()
        pid = instance.start(str(path)).result(30)
    assert pid != os.getpid()
    assert path.read_text().splitlines() == [
        f"execution=None task=log_to instance={instance.id} pid={pid} from the worker"
    ]


@pytest.mark.usefixtures("process_backend")
def test_a_workers_task_control_logs_come_back_saying_whose_they_are(collected: Collected) -> None:
    with Session():
        instance = report.instance()
        pid = instance.start().result(30)
    assert pid != os.getpid()
    # Replayed from the worker's pipe before its outcome, so before result() returns.
    record = collected.by_message()["report: reported from the worker"]
    assert (record.task, record.instance_id, record.process) == ("report", instance.id, os.getpid())
