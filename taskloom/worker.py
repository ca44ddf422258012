"""Workers: claim queued executions from the store, run them, keep their leases alive.

A worker imports user code by module name (code is never uploaded to it), claims executions of the
workflows it found there, and runs each with the normal replaying driver, so an execution that another
worker left half-done (its lease expired) continues from its last recorded step. A heartbeat thread
renews the leases of everything the worker holds. SIGTERM stops claiming, lets running executions finish
within a grace period, and puts back in the queue what is still unfinished then.

An idle worker waits in :meth:`Store.wait_for_work`, which PostgreSQL ends as soon as work is queued
(LISTEN/NOTIFY), and at most until the earliest lease of a running execution expires, so a dead worker's
execution is taken over the moment its lease runs out rather than at the next poll. The poll interval is
the fallback: SQLite, and work no notification announces.

Each execution's lease is renewed by the process-wide lease keeper (:mod:`taskloom.leases`) while the
execution runs, and only then: a worker renews exactly what it is running now, so a run that ended
(or broke off when the store went away) is never kept alive by a heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from taskloom import deadlines
from taskloom.errors import NonDeterminismError, StoreError, WorkflowError
from taskloom.leases import new_owner
from taskloom.queues import declared_queues, register_queues, served_queues
from taskloom.settings import WorkerSettings
from taskloom.store import default_store
from taskloom.store.base import ExecutionRecord, ExecutionStatus, Store
from taskloom.versioning import NO_VERSION
from taskloom.workflow import Workflow

log = logging.getLogger("taskloom.worker")

#: Longest single wait, so that a stop request (SIGTERM) is noticed promptly even with a long poll interval.
STOP_CHECK_SECONDS = 0.2
#: Waiting for a lease to expire ends this much after its expiry time (the claim compares strictly).
LEASE_MARGIN_SECONDS = 0.002
#: Shortest wait when a lease has already expired but could not be claimed (another worker is taking it).
MIN_WAIT_SECONDS = 0.01
#: How long an execution that this worker's code cannot replay (or start) is set aside before any worker
#: tries it again: long enough not to spin, short enough for a deploy of the right code to pick it up.
MISMATCH_RETRY_SECONDS = 30.0
#: How often a worker fails the executions past their deadline (``@workflow(timeout=...)``) that nobody
#: runs; an idle worker also wakes at the next deadline it knows of (see taskloom.deadlines).
DEADLINE_SWEEP_SECONDS = 1.0


class Worker:
    """Claims and runs executions of ``workflows`` until :meth:`stop` (or SIGTERM)."""

    def __init__(
        self,
        workflows: dict[str, Workflow[Any]],
        settings: WorkerSettings | None = None,
        *,
        store: Store | None = None,
        worker_id: str | None = None,
        queues: Sequence[str] = (),
    ) -> None:
        if not workflows:
            raise WorkflowError("the worker found no @workflow in its modules; nothing to run")
        self.workflows = workflows
        #: the version of each workflow this worker's code has: it claims only executions of those
        self.versions = {name: wf.version or NO_VERSION for name, wf in workflows.items()}
        self.settings = settings or WorkerSettings()
        self.store = store or default_store()
        self.worker_id = worker_id or new_owner()
        #: the queues it claims from: ``queues`` (``--queue``), else the default one and those its code declares
        self.queues = served_queues(queues)
        self._stopping = threading.Event()
        self._slots = threading.Semaphore(self.settings.concurrency)
        self._running: dict[str, Future[Any]] = {}
        #: the latest run of each execution this worker started (see _submit); finished ones are pruned
        self._latest: dict[str, Future[Any]] = {}
        self._lock = threading.Lock()
        #: the workflows with a time limit, and when this worker sweeps their deadlines next
        self._timeouts = {name: wf.timeout for name, wf in workflows.items() if wf.timeout is not None}
        self._next_sweep = 0.0
        self._next_deadline: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop claiming; :meth:`run` then drains what it holds and returns."""
        self._stopping.set()

    def run(self) -> bool:
        """Claim and run until stopped. True when executions were still running after the grace period
        (they were put back in the queue; the caller should exit the process to end their threads)."""
        names = sorted(self.workflows)
        served = [f"{name} (version {self.versions[name]})" if self.versions[name] else name for name in names]
        log.info("worker %s: running workflows %s", self.worker_id, ", ".join(served))
        register_queues(self.store, declared_queues())  # their limits, for every worker's claims
        log.info("worker %s: claiming from queues %s", self.worker_id, ", ".join(self.queues))
        pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="taskloom-worker")
        while not self._stopping.is_set():
            self._sweep_deadlines()
            if not self._slots.acquire(timeout=min(self.settings.poll_seconds, STOP_CHECK_SECONDS)):
                continue
            record = self._claim(names)
            if record is None:
                self._slots.release()
                self._wait_for_work(names)
                continue
            self._submit(pool, record)
        abandoned = self._drain()
        pool.shutdown(wait=not abandoned)
        log.info("worker %s: stopped", self.worker_id)
        return abandoned

    def _submit(self, pool: ThreadPoolExecutor, record: ExecutionRecord) -> None:
        """Run the claimed ``record``; after this worker's previous run of it, if that is still ending.

        An execution can be claimed again while its previous run here is still releasing it: a message
        or a resume makes it due the moment it pauses. Both runs hold it as this worker, so the old run's
        releases would drop the new claim's lease, and the execution would be claimable, and run, twice.
        The new run waits for the old one to end, then takes the lease again (:meth:`_execute_after`).
        """
        with self._lock:
            self._latest = {key: run for key, run in self._latest.items() if not run.done()}
            previous = self._latest.get(record.id)
            if previous is None:
                future = pool.submit(self._execute, record)
            else:
                future = pool.submit(self._execute_after, previous, record)
            self._running[record.id] = self._latest[record.id] = future

    def _execute_after(self, previous: Future[Any], record: ExecutionRecord) -> None:
        """:meth:`_execute` once ``previous`` (a run of the same execution) ended, if the lease is still ours
        to take: nobody else took the execution over in between."""
        try:
            previous.exception()  # waits; its own errors were handled (and logged) by _execute
            acquired = self.store.acquire_execution(
                record.id, self.worker_id, self.settings.lease_seconds, from_statuses=(ExecutionStatus.RUNNING,)
            )
        except Exception:
            log.exception(
                "worker %s: execution %s could not be taken back; its lease runs out", self.worker_id, record.id
            )
            self._slots.release()
            return
        if not acquired.taken:
            self._slots.release()  # another worker took it while the previous run ended: it runs there
            return
        self._execute(record)

    def _claim(self, names: list[str]) -> ExecutionRecord | None:
        try:
            return self.store.claim_next_execution(
                self.worker_id, self.settings.lease_seconds, names, versions=self.versions, queues=self.queues
            )
        except Exception:
            log.exception("worker %s: claiming failed; retrying", self.worker_id)
            return None

    def _wait_for_work(self, names: list[str]) -> None:
        """Until work is queued, a lease of a running execution may have run out, the poll interval
        passes, or :meth:`stop`."""
        deadline = time.monotonic() + self._time_to_next_look(names)
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                if self.store.wait_for_work(min(remaining, STOP_CHECK_SECONDS)):
                    return
            except Exception:
                log.exception("worker %s: waiting for work failed; polling", self.worker_id)
                self._stopping.wait(remaining)  # ends at once on stop()
                return

    def _time_to_next_look(self, names: list[str]) -> float:
        wait = self.settings.poll_seconds
        try:
            expiry = self.store.next_lease_expiry(names, versions=self.versions, queues=self.queues)
        except Exception:
            log.exception("worker %s: reading lease expiries failed", self.worker_id)
            return wait
        if self._next_deadline is not None:
            expiry = self._next_deadline if expiry is None else min(expiry, self._next_deadline)
        if expiry is not None:
            wait = min(wait, max(MIN_WAIT_SECONDS, expiry - time.time() + LEASE_MARGIN_SECONDS))
        return wait

    def _sweep_deadlines(self) -> None:
        """Fail the executions past their deadline that nobody runs (queued, paused, or left running by a
        dead process), every DEADLINE_SWEEP_SECONDS and when the next known deadline passes; the store
        checks, in the same transaction, that no live owner holds them. A failed sweep is logged and
        tried again: an execution it missed only ends later."""
        if not self._timeouts:
            return
        due = self._next_deadline is not None and time.time() >= self._next_deadline
        if not due and time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + DEADLINE_SWEEP_SECONDS
        try:
            expired = deadlines.sweep(self.store, self._timeouts, time.time())
        except Exception:
            log.exception("worker %s: failing executions past their deadline failed; retrying", self.worker_id)
            return
        self._next_deadline = expired.next_deadline

    def _execute(self, record: ExecutionRecord) -> None:
        """Run one claimed execution. Its outcome is recorded by the driver; what reaches here is not a
        workflow's failure but a reason it could not run, and the execution is never left stuck by it."""
        retry_after: float | None = None
        try:
            workflow = self.workflows[record.workflow]
            ctx = asyncio.run(
                workflow.arun(
                    execution_id=record.id,
                    store=self.store,
                    lease_owner=self.worker_id,
                    lease_seconds=self.settings.lease_seconds,
                )
            )
            log.info("worker %s: execution %s %s", self.worker_id, record.id, ctx.status)
        except NonDeterminismError as error:
            # The code this worker has cannot replay it: left as it was, for a worker with the right code,
            # and set aside for a while so that this worker does not claim it again in a loop.
            log.error("worker %s: %s (set aside for %g s)", self.worker_id, error, MISMATCH_RETRY_SECONDS)
            retry_after = MISMATCH_RETRY_SECONDS
        except StoreError as error:
            log.warning("worker %s: execution %s stopped, the store failed: %s", self.worker_id, record.id, error)
        except SystemExit:
            # A step called sys.exit: counted as a crash by the driver and put back in the queue.
            log.warning("worker %s: a step of execution %s tried to exit the process", self.worker_id, record.id)
        except Exception:
            log.exception("worker %s: execution %s could not run", self.worker_id, record.id)
            retry_after = MISMATCH_RETRY_SECONDS
        finally:
            with self._lock:
                self._running.pop(record.id, None)
            try:  # a no-op when the driver released it; otherwise (it never started) set it aside a while
                self.store.release_execution(record.id, self.worker_id, requeue=False, retry_after=retry_after)
            except Exception as error:
                log.warning("worker %s: releasing %s failed (%s); its lease runs out", self.worker_id, record.id, error)
            finally:
                self._slots.release()

    def _drain(self) -> bool:
        with self._lock:
            pending = list(self._running.items())
        abandoned = False
        deadline = time.monotonic() + self.settings.grace_seconds
        for execution_id, future in pending:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("worker %s: execution %s still running at shutdown; requeued", self.worker_id, execution_id)
                try:
                    self.store.release_execution(execution_id, self.worker_id, requeue=True)
                except Exception as error:
                    log.warning(
                        "worker %s: requeueing %s failed (%s); its lease runs out", self.worker_id, execution_id, error
                    )
                abandoned = True
            except Exception:
                pass
        return abandoned
