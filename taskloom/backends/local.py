"""The ``local`` backend (default): instances run on threads of this process.

A sync task runs under its policy with ``policy.call_sync`` in a pool thread; an async task gets its own
event loop there (``asyncio.run``), so it never competes with the caller's loop. With a Dask executor
(:mod:`taskloom.executors`) the policy runs the same way but each attempt goes to the cluster.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskloom import policy
from taskloom.backends.pool import ElasticThreadPool, shared_thread_pool
from taskloom.executors import RemoteAttempts, current_executor
from taskloom.runtime.instance import InstanceRun


class LocalBackend:
    """Runs each instance on a thread of a shared, elastic pool."""

    name = "local"

    def __init__(self, pool: ElasticThreadPool | None = None) -> None:
        self._pool = pool or shared_thread_pool()

    def submit(self, run: InstanceRun) -> None:
        self._pool.submit(_run, run)

    def close(self) -> None:
        """Nothing to release: idle threads end by themselves, and they never hold up exit."""


def _run(run: InstanceRun) -> None:
    if not run.begin():
        return
    try:
        value = run.call_in_session(lambda: _call(run))
    except BaseException as error:
        run.fail(error)
    else:
        run.succeed(value)


def _call(run: InstanceRun) -> Any:
    task = run.task
    remote = current_executor()
    if remote is not None:  # each attempt on Dask (TASKLOOM_EXECUTOR, use_dask()); the policy stays here
        attempts: Any = RemoteAttempts(task, remote)
        return asyncio.run(policy.call_async(attempts, run.args, run.kwargs, control=run.control))
    if task.is_async:
        return asyncio.run(policy.call_async(task, run.args, run.kwargs, control=run.control))
    return policy.call_sync(task, run.args, run.kwargs, control=run.control)


def create_backend() -> LocalBackend:
    return LocalBackend()
