"""Child workflows with real processes, on both stores.

A parent whose process is SIGKILLed while its child runs is continued by another process, which finds
the child (its id derives from the parent's and the step's) instead of starting a second one. Under
workers the child is queued for a worker, the parent waits paused (``child:<id>``) and the child's end
wakes it; the child's failure reaches the parent as its own exception; a worker killed mid-child is
replaced without a second child; cancelling the parent cancels the child that a worker is running.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from processes import free_port, kill, stop, wait_for

from taskloom import serde
from taskloom.children import child_id_for
from taskloom.events import EventType
from taskloom.executions import queue_execution, record_cancel
from taskloom.store import Store, open_store

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
MODULE = "helpers.childflows"


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path),
        "TASKLOOM_LEASE_SECONDS": "1",
        "CHILD_LOG": str(tmp_path / "child.log"),
        "CHILD_GO": str(tmp_path / "go"),
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }


@pytest.fixture
def store(env: dict[str, str]) -> Iterator[Store]:
    opened = open_store(env["TASKLOOM_DATABASE_URL"])
    yield opened
    opened.close()


def run_parent(env: dict[str, str], execution_id: str, value: int) -> subprocess.Popen[str]:
    """``parent.run(value, execution_id=...)`` embedded, in a process of its own; prints the output."""
    code = f"from {MODULE} import parent; print(parent.run({value}, execution_id={execution_id!r}).output)"
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = Path(env["TASKLOOM_HOME"]) / f"worker-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", MODULE, "--poll", "0.05"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def log_lines(env: dict[str, str]) -> list[list[str]]:
    path = Path(env["CHILD_LOG"])
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def ran(env: dict[str, str], execution: str, what: str) -> list[str]:
    """The pids that ran ``what`` of ``execution``."""
    return [pid for e, w, pid in log_lines(env) if e == execution and w == what]


def children(store: Store) -> list[str]:
    return [r.id for r in store.list_executions(workflow="child")]


def started_events(store: Store, execution_id: str) -> int:
    return sum(e.type is EventType.EXECUTION_STARTED for e in store.load_events(execution_id))


def test_a_parent_killed_after_starting_its_child_never_starts_it_twice(env: dict[str, str], store: Store) -> None:
    child_id = child_id_for("order-1", "1")
    first = run_parent(env, "order-1", 4)
    try:
        wait_for(lambda: ran(env, child_id, "held"), what="the child's first step")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        kill(first)
    assert children(store) == [child_id]
    Path(env["CHILD_GO"]).touch()
    second = run_parent(env, "order-1", 4)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0
    assert output.strip() == repr({"child": {"value": 41, "parent": "order-1"}, "parent_id": None})
    # One child, started once; the second process took it over (its dead owner's crash counted).
    assert children(store) == [child_id]
    assert started_events(store, child_id) == 1
    record = store.get_execution(child_id)
    assert record is not None and record.status == "completed" and record.crashes == 1
    assert ran(env, child_id, "after") == [str(second.pid)]


def test_with_workers_the_child_is_queued_and_the_parent_waits_for_it_durably(
    env: dict[str, str], store: Store
) -> None:
    Path(env["CHILD_GO"]).touch()
    ok = queue_execution(store, "parent", f"{MODULE}:parent", 2)
    refused = queue_execution(store, "parent", f"{MODULE}:parent", -3)
    worker = start_worker(env)
    try:
        wait_for(
            lambda: all(store.get_execution(i).status == "completed" for i in (ok, refused)),  # type: ignore[union-attr]
            what="both parents",
        )
    finally:
        stop(worker)
    assert serde.loads(store.get_execution(ok).output) == {  # type: ignore[union-attr]
        "child": {"value": 21, "parent": ok},
        "parent_id": None,
    }
    # The child's failure reached its parent as the child's own exception type.
    assert serde.loads(store.get_execution(refused).output) == {"refused": -3}  # type: ignore[union-attr]
    # Queued, not run inline: the parent paused for it, and the child's end made it due.
    pauses = [e.name for e in store.load_events(ok) if e.type is EventType.EXECUTION_PAUSED]
    assert pauses == [f"child:{child_id_for(ok, '1')}"]
    assert sorted(children(store)) == sorted([child_id_for(ok, "1"), child_id_for(refused, "1")])


def test_a_worker_killed_while_the_child_runs_is_replaced_without_a_second_child(
    env: dict[str, str], store: Store
) -> None:
    parent_id = queue_execution(store, "parent", f"{MODULE}:parent", 7)
    child_id = child_id_for(parent_id, "1")
    first = start_worker(env)
    try:
        wait_for(lambda: ran(env, child_id, "held"), what="the child's first step")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        kill(first)
    Path(env["CHILD_GO"]).touch()
    second = start_worker(env)
    try:
        wait_for(lambda: store.get_execution(parent_id).status == "completed", what="the parent")  # type: ignore[union-attr]
    finally:
        stop(second)
    assert serde.loads(store.get_execution(parent_id).output)["child"]["value"] == 71  # type: ignore[union-attr]
    assert children(store) == [child_id]
    assert started_events(store, child_id) == 1
    assert Counter(w for e, w, _ in log_lines(env) if e == child_id)["after"] == 1


def test_cancelling_the_parent_cancels_the_child_a_worker_runs(env: dict[str, str], store: Store) -> None:
    parent_id = queue_execution(store, "parent", f"{MODULE}:parent", 5)
    child_id = child_id_for(parent_id, "1")
    worker = start_worker(env)
    try:
        wait_for(lambda: ran(env, child_id, "held"), what="the child's first step")
        record_cancel(store, parent_id)
        assert store.get_execution(child_id).status == "cancelled"  # type: ignore[union-attr]
        Path(env["CHILD_GO"]).touch()
        # The child's run stops at its next write and lets go of the child: its next step never runs.
        wait_for(lambda: store.get_execution(child_id).lease_owner is None, what="the child's run to stop")  # type: ignore[union-attr]
    finally:
        stop(worker)
    assert ran(env, child_id, "after") == []
    assert store.get_execution(parent_id).status == "cancelled"  # type: ignore[union-attr]
    assert store.get_execution(child_id).status == "cancelled"  # type: ignore[union-attr]


def test_the_child_names_its_parent_in_list_and_the_http_api(env: dict[str, str], store: Store) -> None:
    Path(env["CHILD_GO"]).touch()
    parent = run_parent(env, "order-9", 1)
    parent.communicate(timeout=120)
    assert parent.returncode == 0
    child_id = child_id_for("order-9", "1")
    listed = subprocess.run(
        [sys.executable, "-m", "taskloom", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    by_id = {v["execution_id"]: v for v in json.loads(listed.stdout)}
    assert by_id[child_id]["parent_id"] == "order-9" and by_id["order-9"]["parent_id"] is None
    text = subprocess.run(
        [sys.executable, "-m", "taskloom", "list"], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [line for line in text if "child of" in line] == [next(line for line in text if line.startswith(child_id))]
    assert next(line for line in text if line.startswith(child_id)).endswith("child  (child of order-9)")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "server", "--port", str(port)],
        env={**env, "TASKLOOM_API_TOKEN": "child-token-0123456789"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/health"), what="the server")
        headers = {"Authorization": "Bearer child-token-0123456789"}
        one = httpx.get(f"{url}/executions/{child_id}", headers=headers, timeout=30)
        assert one.status_code == 200 and one.json()["parent_id"] == "order-9"
        page = httpx.get(f"{url}/executions", headers=headers, timeout=30).json()["executions"]
        assert {v["execution_id"]: v["parent_id"] for v in page} == {child_id: "order-9", "order-9": None}
    finally:
        stop(server)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
