"""Deploying changed workflow code under real worker processes, on SQLite and PostgreSQL.

One module, ``orders``, written to the test's folder, reads which code it is from the environment:
``ORDERS_CODE=1`` computes the tax the old way; ``ORDERS_CODE=2`` puts the new way behind
``patched("fix-tax")``; ``ORDERS_VERSION`` is the workflow's ``version`` option. Each worker is a
``taskloom worker orders`` process with one of these environments: a deploy is stopping the workers of
the old code and starting those of the new.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import stop, wait_for

from taskloom.events import EventType
from taskloom.executions import queue_execution, record_resume
from taskloom.store import Store

pytestmark = pytest.mark.integration

MODULE = '''
"""The workflow ``order`` as the code named by ORDERS_CODE has it, at version ORDERS_VERSION."""
import os

from taskloom import WorkflowExecutionContext, patched, task, workflow
from taskloom.tasks import pause

CODE = os.environ["ORDERS_CODE"]


@task
def tax_v1(amount: int) -> int:
    return amount // 10


@task
def tax_v2(amount: int) -> int:
    return amount // 5


@workflow.with_options(name="order", version=os.environ.get("ORDERS_VERSION") or None)
async def order(ctx: WorkflowExecutionContext[int]) -> str:
    if CODE == "1":
        tax = await tax_v1(ctx.input)
        await pause("approve")
        return f"v1:{tax}"
    if patched("fix-tax"):
        tax = await tax_v2(ctx.input)
    else:
        tax = await tax_v1(ctx.input)
    await pause("approve")
    return f"v2-new:{tax}" if patched("fix-tax") else f"v2-old:{tax}"
'''


@pytest.fixture
def env(store_url: str, tmp_path: Path) -> dict[str, str]:
    """The workers' environment: this test's store (``store`` is the same one, from tests/conftest.py)."""
    (tmp_path / "orders.py").write_text(MODULE)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("TASKLOOM_")},
        "TASKLOOM_DATABASE_URL": store_url,
        "TASKLOOM_HOME": str(tmp_path),
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }


def start_worker(env: dict[str, str], code: str, version: str = "") -> subprocess.Popen[bytes]:
    """``taskloom worker orders`` running ``code`` at ``version``; ready (claiming) when this returns."""
    log = Path(env["TASKLOOM_HOME"]) / f"worker-{time.monotonic_ns()}.log"
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "orders", "--poll", "0.05"],
            env={**env, "ORDERS_CODE": code, "ORDERS_VERSION": version},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    wait_for(lambda: "running workflows" in log.read_text() or worker.poll() is not None, what="the worker")
    assert worker.poll() is None, log.read_text()
    return worker


def status(store: Store, execution_id: str) -> str:
    record = store.get_execution(execution_id)
    assert record is not None
    return record.status


def wait_status(store: Store, ids: list[str], wanted: str) -> None:
    wait_for(lambda: all(status(store, i) == wanted for i in ids), what=f"{len(ids)} executions {wanted}")


def output(store: Store, execution_id: str) -> object:
    return store.load_events(execution_id)[-1].value


def queue(store: Store, amounts: list[int]) -> list[str]:
    return [queue_execution(store, "order", "orders:order", amount) for amount in amounts]


def resume(store: Store, ids: list[str]) -> None:
    for execution_id in ids:
        record_resume(store, execution_id, "yes", status="queued")


def test_executions_paused_on_the_old_code_finish_on_the_patched_code_on_the_old_branch(
    env: dict[str, str], store: Store
) -> None:
    old_worker = start_worker(env, "1")
    try:
        old = queue(store, [100, 200, 300])
        wait_status(store, old, "paused")
    finally:
        stop(old_worker)

    new_worker = start_worker(env, "2")
    try:
        new = queue(store, [100, 200])
        wait_status(store, new, "paused")
        resume(store, old + new)
        wait_status(store, old + new, "completed")
    finally:
        stop(new_worker)

    assert [output(store, i) for i in old] == ["v2-old:10", "v2-old:20", "v2-old:30"]
    assert [output(store, i) for i in new] == ["v2-new:20", "v2-new:40"]
    for execution_id in old + new:
        patches = [e.name for e in store.load_events(execution_id) if e.type is EventType.PATCHED]
        assert patches == ([] if execution_id in old else ["fix-tax"]), execution_id


def test_a_worker_never_claims_an_execution_of_a_version_its_code_does_not_have(
    env: dict[str, str], store: Store
) -> None:
    first = start_worker(env, "2", version="1")
    try:
        old = queue(store, [100, 200])
        wait_status(store, old, "paused")
    finally:
        stop(first)
    resume(store, old)  # due now, but only for a worker with version 1

    second = start_worker(env, "2", version="2")
    try:
        # Claims take the oldest due execution first: had the version-2 worker been able to take the
        # version-1 executions (older, due since before it started), it would have run them before this one.
        new = queue(store, [50])
        wait_status(store, new, "paused")
        resume(store, new)
        wait_status(store, new, "completed")
        assert [status(store, i) for i in old] == ["queued", "queued"]

        third = start_worker(env, "2", version="1")
        try:
            wait_status(store, old, "completed")
        finally:
            stop(third)
    finally:
        stop(second)

    assert [output(store, i) for i in old + new] == ["v2-new:20", "v2-new:40", "v2-new:10"]
    versions = [record.version for i in old + new if (record := store.get_execution(i)) is not None]
    assert versions == ["1", "1", "2"]
