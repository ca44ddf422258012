"""Caller-chosen ids and ``wf.start()`` with real processes, on SQLite and PostgreSQL.

Racing processes with one new id start it once; the process that ``start``ed an execution is killed
with SIGKILL mid-run and a worker finishes it without running a completed step again; a process that
exits with started work puts it back in the queue and says so; the CLI and the HTTP API take an id.
Every step notes ``<label> start|done <pid>`` in a log (``helpers.crashflow``), so the tests see which
step ran in which process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import free_port, kill, stop, wait_for

from taskloom import serde
from taskloom.store import default_store, stores
from taskloom.store.base import ExecutionRecord

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
MODULE = "helpers.ownids"
_FOREIGN = ("TASKLOOM_BACKEND", "TASKLOOM_EXECUTOR", "TASKLOOM_SERVER_URL", "TASKLOOM_SECRET_KEY", "TASKLOOM_START")


@pytest.fixture
def env(store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """This test's store (SQLite or PostgreSQL) for the test process and the processes it starts."""
    (tmp_path / "ready").mkdir()
    settings = {
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path / "home"),
        "CRASH_LOG": str(tmp_path / "steps.log"),
        "CRASH_GATE": str(tmp_path / "gate"),
        "RACE_GATE": str(tmp_path / "race"),
        "RACE_READY": str(tmp_path / "ready"),
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in _FOREIGN:
        monkeypatch.delenv(name, raising=False)
    stores.clear()
    environment = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    yield environment
    stores.clear()


def python(env: dict[str, str], *args: str, stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=env["TASKLOOM_HOME"]
    )


def steps_log(env: dict[str, str]) -> list[tuple[str, str, int]]:
    path = Path(env["CRASH_LOG"])
    if not path.exists():
        return []
    return [(label, phase, int(pid)) for label, phase, pid in (line.split() for line in path.read_text().splitlines())]


def starts(env: dict[str, str], label: str) -> list[int]:
    """The pids in which step ``label`` started."""
    return [pid for step, phase, pid in steps_log(env) if step == label and phase == "start"]


def record(execution_id: str) -> ExecutionRecord:
    found = default_store().get_execution(execution_id)
    assert found is not None, f"no execution {execution_id}"
    return found


def finished(execution_id: str) -> ExecutionRecord | None:
    found = default_store().get_execution(execution_id)
    return found if found is not None and found.status in ("completed", "failed", "cancelled") else None


# -- racing processes -------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["RUN", "START"])
def test_processes_racing_with_one_new_id_start_it_once(env: dict[str, str], how: str) -> None:
    Path(env["TASKLOOM_HOME"]).mkdir()
    racers = [python(env, "-m", MODULE, "race", "order-42", how, "charge") for _ in range(4)]
    try:
        wait_for(lambda: len(list(Path(env["RACE_READY"]).iterdir())) == len(racers), 60, "every racer ready")
        Path(env["RACE_GATE"]).touch()  # they all call at once now
        outputs = [racer.communicate(timeout=120) for racer in racers]
    finally:
        kill(*racers)
    for racer, (out, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err
        assert json.loads(out) == "charge ok"
    assert len(starts(env, "charge")) == 1  # the step that must happen once per id happened once
    assert [r.id for r in default_store().list_executions()] == ["order-42"]
    assert record("order-42").status == "completed"


# -- a crash of the process that started it ---------------------------------------------------------
def test_a_sigkill_of_the_starting_process_mid_run_is_recovered_by_a_worker(env: dict[str, str]) -> None:
    Path(env["TASKLOOM_HOME"]).mkdir()
    starter = python({**env, "TASKLOOM_LEASE_SECONDS": "1"}, "-m", MODULE, "start-and-wait", "killed-1", "3")
    worker: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: starts(env, "step3"), 60, "step 3 to start in the starting process")
        starter.send_signal(signal.SIGKILL)
        starter.wait(timeout=30)
        held = record("killed-1")
        assert held.status == "running" and (held.lease_owner or "").startswith("start:")
        Path(env["CRASH_GATE"]).touch()
        worker = python(env, "-m", "taskloom", "worker", MODULE, "--poll", "0.05", "--lease", "5")
        done = wait_for(lambda: finished("killed-1"), 60, "a worker to finish the execution")
    finally:
        kill(starter, *([worker] if worker else []))
    assert done.status == "completed" and done.crashes == 1
    assert [record_step for record_step in steps_log(env) if record_step[0] in ("step1", "step2")] == [
        ("step1", "start", starter.pid),
        ("step1", "done", starter.pid),
        ("step2", "start", starter.pid),
        ("step2", "done", starter.pid),
    ]  # completed before the kill: never run again
    assert worker is not None
    assert starts(env, "step3") == [starter.pid, worker.pid]  # in flight at the kill: at least once
    assert starts(env, "step4") == [worker.pid]
    assert serde.loads(done.output) == ["step1 ok", "step2 ok", "step3 ok", "step4 ok"]


def test_a_process_that_exits_with_started_work_puts_it_back_in_the_queue_and_says_so(
    env: dict[str, str], tmp_path: Path
) -> None:
    Path(env["TASKLOOM_HOME"]).mkdir()
    errors = tmp_path / "starter.err"
    with errors.open("w") as err:
        starter = python(env, "-m", MODULE, "start-and-exit", "left-1", stderr=err)
    try:
        # Its main thread returns while step 2 waits at the gate: the exit puts the execution back.
        said = wait_for(lambda: "put back in the queue" in errors.read_text() and errors.read_text(), 60, "warning")
        assert "left-1" in said and "taskloom recover" in said
        wait_for(lambda: record("left-1").status == "queued", 30, "the execution to be queued again")
        Path(env["CRASH_GATE"]).touch()  # the step in flight ends; then the process does
        assert starter.wait(timeout=60) == 0, errors.read_text()
    finally:
        kill(starter)
    assert record("left-1").lease_owner is None
    recovered = subprocess.run(
        [sys.executable, "-m", "taskloom", "recover", MODULE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=env["TASKLOOM_HOME"],
    )
    assert recovered.returncode == 0, recovered.stderr
    assert record("left-1").status == "completed"
    assert starts(env, "step1") == [starter.pid]  # completed before the exit: not run again


# -- the CLI ----------------------------------------------------------------------------------------
def taskloom(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=env["TASKLOOM_HOME"],
    )


def test_cli_run_with_an_id_starts_it_once_then_shows_it(env: dict[str, str]) -> None:
    Path(env["TASKLOOM_HOME"]).mkdir()
    first = taskloom(env, "run", f"{MODULE}:once", '{"label": "cli"}', "--execution-id", "cli-1")
    assert first.returncode == 0, first.stderr
    assert "execution cli-1" in first.stdout and "cli ok" in first.stdout
    again = taskloom(env, "run", f"{MODULE}:once", '{"label": "changed"}', "--execution-id", "cli-1")
    assert again.returncode == 0, again.stderr
    assert "cli ok" in again.stdout and "exists" in again.stderr
    assert len(starts(env, "cli")) == 1
    assert starts(env, "changed") == []
    bad = taskloom(env, "run", f"{MODULE}:once", '{"label": "bad"}', "--execution-id", "cli\t1")
    assert bad.returncode == 2 and "execution_id" in bad.stderr and "control" in bad.stderr
    assert "Traceback" not in bad.stderr
    taken = taskloom(env, "run", f"{MODULE}:other", "--execution-id", "cli-1")
    assert taken.returncode == 2 and "'once'" in taken.stderr


# -- HTTP, and starting through a server ------------------------------------------------------------
@pytest.fixture
def server(env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """``taskloom server`` and a worker for ``helpers.ownids`` on this test's store: (url, token)."""
    Path(env["TASKLOOM_HOME"]).mkdir()
    token = "own-ids-token-0123456789"
    env["TASKLOOM_API_TOKEN"] = token
    port = free_port()
    server = python(env, "-m", "taskloom", "server", MODULE, "--port", str(port), stderr=subprocess.DEVNULL)
    worker = python(env, "-m", "taskloom", "worker", MODULE, "--poll", "0.05", stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 60, "the server to answer")
        yield url, token
    finally:
        stop(server, worker)


def test_post_executions_with_an_id_creates_it_once_then_returns_it(
    env: dict[str, str], server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, token = server
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        created = api.post("/executions", json={"workflow": "once", "input": {"label": "http"}, "execution_id": "h-1"})
        assert created.status_code == 201, created.text
        assert created.json() == {"execution_id": "h-1", "workflow": "once", "status": "queued", "created": True}
        assert created.headers["Location"] == "/executions/h-1"
        again = api.post("/executions", json={"workflow": "once", "input": {"label": "x"}, "execution_id": "h-1"})
        assert again.status_code == 200, again.text
        assert again.json()["created"] is False and again.json()["execution_id"] == "h-1"
        wait_for(lambda: api.get("/executions/h-1").json()["status"] == "completed", 60, "h-1 to complete")
        assert api.get("/executions/h-1").json()["output"] == "http ok"
        assert starts(env, "http") and len(starts(env, "http")) == 1 and starts(env, "x") == []
        bad = api.post("/executions", json={"workflow": "once", "execution_id": "h\n1"})
        assert bad.status_code == 422 and "execution_id" in bad.json()["error"]
        assert api.post("/executions", json={"workflow": "once", "execution_id": ""}).status_code == 422
        taken = api.post("/executions", json={"workflow": "other", "execution_id": "h-1"})
        assert taken.status_code == 409 and "'once'" in taken.json()["error"]
        late = api.post("/executions", json={"workflow": "once", "input": {"label": "late"}, "delay": -1})
        assert late.status_code == 422

    # wf.start with a server URL: queued through the server, run by its worker, followed by the handle.
    from helpers.ownids import once

    monkeypatch.setenv("TASKLOOM_SERVER_URL", url)
    monkeypatch.setenv("TASKLOOM_API_TOKEN", token)
    handle = once.start({"label": "remote"}, execution_id="h-2")
    assert handle.result(timeout=60) == "remote ok"
    assert once.start({"label": "remote-again"}, execution_id="h-2").result(timeout=60) == "remote ok"
    assert len(starts(env, "remote")) == 1 and starts(env, "remote-again") == []
    # and the CLI through the server, with an id
    cli = taskloom(env, "--server", url, "run", f"{MODULE}:once", '{"label": "cli-remote"}', "--execution-id", "h-2")
    assert cli.returncode == 0, cli.stderr
    assert "exists (completed)" in cli.stdout and "remote ok" in cli.stdout
