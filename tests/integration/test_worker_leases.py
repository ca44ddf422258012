"""Worker edge cases around leases, with real worker processes on both stores.

A worker that stalls past its lease, an execution still running when the SIGTERM grace ends, and an
execution the worker's code cannot start: none of them may leave an execution running with nobody on it,
and none may record a step twice.
"""

from __future__ import annotations

import collections
import os
import pickle
import signal
import sys
import time
import types

import pytest
from processes import stop, wait_for
from test_worker import TARGET, env, lines, start_worker, worker_log

from taskloom.events import EventType
from taskloom.executions import queue_execution
from taskloom.store import Store, open_store

pytestmark = pytest.mark.integration
__all__ = ["env"]  # the fixture, shared with test_worker.py


def completions(store: Store, execution: str) -> collections.Counter[str]:
    return collections.Counter(
        e.step_id or "" for e in store.load_events(execution) if e.type is EventType.STEP_COMPLETED
    )


def test_a_worker_that_stalls_past_its_lease_records_nothing_more_once_another_took_over(env: dict[str, str]) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    execution = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 12, "pause": 0.1})
    stalled = start_worker(env, "--lease", "1")
    wait_for(lambda: len(lines(env)) >= 2, what="two steps on the first worker")
    os.kill(stalled.pid, signal.SIGSTOP)  # alive, but renewing nothing
    first_owner = store.get_execution(execution).lease_owner  # type: ignore[union-attr]
    other = start_worker(env, "--lease", "1")
    try:
        wait_for(
            lambda: (
                (record := store.get_execution(execution)) is not None and record.lease_owner not in (None, first_owner)
            ),
            what="the takeover",
        )
        os.kill(stalled.pid, signal.SIGCONT)  # it wakes up believing it still runs the execution
        wait_for(lambda: store.get_execution(execution).status == "completed", what="the execution to finish")
    finally:
        os.kill(stalled.pid, signal.SIGCONT)
        stop(stalled, other)
    record = store.get_execution(execution)
    assert record is not None and record.output is not None
    done = completions(store, execution)
    assert sorted(done, key=int) == [str(n) for n in range(1, 13)]
    assert set(done.values()) == {1}, done  # the stale worker's writes were all refused
    assert record.crashes == 1  # the stalled holder counted as dead when its lease was taken over


def test_an_execution_still_running_when_the_sigterm_grace_ends_is_put_back_and_finished_elsewhere(
    env: dict[str, str],
) -> None:
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    execution = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 6, "pause": 0.5})
    draining = start_worker(env, "--grace", "0.3")
    wait_for(lambda: len(lines(env)) >= 1, what="the first step")
    draining.send_signal(signal.SIGTERM)
    draining.wait(timeout=30)
    record = store.get_execution(execution)
    assert record is not None
    assert (record.status, record.lease_owner) == ("queued", None)  # not running with nobody on it
    finisher = start_worker(env)
    try:
        wait_for(lambda: store.get_execution(execution).status == "completed", what="the other worker")
    finally:
        stop(finisher)
    assert set(completions(store, execution).values()) == {1}
    assert store.get_execution(execution).output is not None


def test_an_execution_the_workers_code_cannot_start_is_set_aside_not_claimed_in_a_loop(env: dict[str, str]) -> None:
    # An input whose class exists here but not in the worker (renamed, or never deployed there).
    module = types.ModuleType("gone_with_the_deploy")
    exec("class Order:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        blob = pickle.dumps(module.Order(), protocol=5)
    finally:
        del sys.modules[module.__name__]
    store = open_store(env["TASKLOOM_DATABASE_URL"])
    store.create_execution("undecodable", "counted", blob, "queued", f"{TARGET}:counted")
    good = queue_execution(store, "counted", f"{TARGET}:counted", {"steps": 2})
    worker = start_worker(env)
    try:
        wait_for(lambda: store.get_execution(good).status == "completed", what="the good execution")
        wait_for(lambda: "set aside" in worker_log(env, worker), what="the worker to set it aside")
        # The worker logs before it releases the claim: wait for the release itself.
        wait_for(lambda: store.get_execution("undecodable").lease_owner is None, what="the claim's release")
        record = store.get_execution("undecodable")
        assert record is not None and record.lease_owner is None and record.crashes == 0
        assert record.lease_expires_at is not None and record.lease_expires_at > time.time() + 10
        assert "gone_with_the_deploy" in worker_log(env, worker)  # the log names what is missing
        assert worker_log(env, worker).count("set aside") == 1  # not claimed again and again
    finally:
        stop(worker)
    assert [e.type for e in store.load_events("undecodable")] == [EventType.EXECUTION_STARTED]
