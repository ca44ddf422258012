"""Which workers are alive, what each serves and what each holds.

A worker process registers what it serves in the store's worker registry (the table that also tells
the server whether any worker serves a task instance's target): its task targets as ``module:qualname``
and its workflows as ``workflow:NAME``, again with every heartbeat, and removes them when it stops. A
worker killed outright stops renewing, so it drops out of the list once :data:`WORKER_SEEN_SECONDS` pass.
What a worker holds is read from the leases: the running executions leased to its id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from taskloom.store.base import ExecutionStatus, Store
from taskloom.store.instances import WORKER_HEARTBEAT_SECONDS, WORKER_SEEN_SECONDS, instance_queue_for

log = logging.getLogger("taskloom.worker")

#: the prefix that marks a workflow among a worker's registered targets
WORKFLOW_TARGET = "workflow:"
#: at most this many running executions are read to tell what each worker holds
HELD_READ_LIMIT = 10_000


def workflow_target(name: str) -> str:
    return f"{WORKFLOW_TARGET}{name}"


@dataclass
class WorkerView:
    """One live worker as ``taskloom workers`` and the dashboard show it."""

    worker_id: str
    last_seen: float
    workflows: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    holds: list[str] = field(default_factory=list)  # ids of the running executions leased to it

    @property
    def process(self) -> str:
        """``host:pid``: a worker id is ``host:pid:random`` (see :func:`taskloom.leases.new_owner`)."""
        return self.worker_id.rsplit(":", 1)[0]


def live_workers(store: Store, within_seconds: float = WORKER_SEEN_SECONDS) -> list[WorkerView]:
    """The workers seen within ``within_seconds``, by id, each with what it serves and holds."""
    views: dict[str, WorkerView] = {}
    for worker_id, target, seen in instance_queue_for(store).seen_workers(within_seconds):
        view = views.setdefault(worker_id, WorkerView(worker_id, seen))
        view.last_seen = max(view.last_seen, seen)
        if target.startswith(WORKFLOW_TARGET):
            view.workflows.append(target.removeprefix(WORKFLOW_TARGET))
        else:
            view.tasks.append(target)
    if views:
        for record in store.list_executions(status=ExecutionStatus.RUNNING, limit=HELD_READ_LIMIT):
            holder = views.get(record.lease_owner or "")
            if holder is not None:
                holder.holds.append(record.id)
    return sorted(views.values(), key=lambda view: view.worker_id)


class Presence:
    """Keeps one worker's registration fresh from a thread of its own, until :meth:`stop`.

    A thread of its own so that a worker busy with long steps (or one waiting for work) still shows as
    alive; a registration that fails (the store is down for a moment) is logged and tried again at the
    next beat, never ends the worker.
    """

    def __init__(
        self, store: Store, worker_id: str, targets: Sequence[str], every: float = WORKER_HEARTBEAT_SECONDS
    ) -> None:
        self.worker_id = worker_id
        self.targets = list(targets)
        self.every = every
        self._queue = instance_queue_for(store)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="taskloom-presence", daemon=True)

    def start(self) -> Presence:
        self._register()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=max(self.every, 1.0))
        try:
            self._queue.unregister_worker(self.worker_id)
        except Exception:
            log.warning("worker %s: could not remove its registration; it expires by itself", self.worker_id)

    def _beat(self) -> None:
        while not self._stopped.wait(self.every):
            self._register()

    def _register(self) -> None:
        started = time.monotonic()
        try:
            self._queue.register_worker(self.worker_id, self.targets)
        except Exception as error:
            log.warning("worker %s: registering failed (%s); trying again in %gs", self.worker_id, error, self.every)
        else:
            log.debug("worker %s: registered in %.3fs", self.worker_id, time.monotonic() - started)
