"""Leases of the executions this process runs: who owns a run, and one thread that keeps the leases alive.

Every run of an execution holds a lease in the store, a worker's and an embedded ``wf.run()`` alike, so
a second driver can see that the execution is being run and by whom, and an execution whose owner died
(SIGKILL, a power loss, ``os._exit``) is taken over by any worker or ``taskloom recover`` once its lease
has run out.

One daemon thread per process (not one per run) renews the leases of the runs registered here every
``lease_seconds / 3``, and looks every :data:`CANCEL_POLL_SECONDS` whether one was cancelled from
outside, so a running execution stops starting steps within that time. A run writes nothing once its
lease is lost: the store fences every write by the owner.
"""

from __future__ import annotations

import os
import threading
import time

from taskloom.ids import uuid4_hex
from taskloom.logs import lazy_logger
from taskloom.store.base import ExecutionStatus, Store

log = lazy_logger("taskloom.leases")  # logging is imported when it first logs

#: how often the keeper looks whether a running execution was cancelled from outside
CANCEL_POLL_SECONDS = 0.2


def new_owner(kind: str | None = None) -> str:
    """A lease owner id that says which process holds the work: ``host:pid:random``, after ``kind:`` when
    given (``run:`` for an embedded run; workers use the bare form as their id)."""
    process = f"{_host()}:{os.getpid()}:{uuid4_hex()[:6]}"
    return f"{kind}:{process}" if kind else process


def _host() -> str:
    """This machine's host name: ``os.uname`` where there is one, which needs no ``socket`` (a run's import)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


class KeptLease:
    """One registered run: its lease is renewed until :meth:`LeaseKeeper.drop`.

    A plain class, not a dataclass: making a dataclass compiles its methods, about 1 ms of every process's
    start (issue 12's one-step process).
    """

    __slots__ = ("cancelled", "execution_id", "lease_seconds", "lost", "next_renewal", "owner", "store")

    def __init__(
        self, store: Store, execution_id: str, owner: str, lease_seconds: float, cancelled: threading.Event
    ) -> None:
        self.store = store
        self.execution_id = execution_id
        self.owner = owner
        self.lease_seconds = lease_seconds
        #: set once the execution was seen cancelled: the run starts no new step
        self.cancelled = cancelled
        #: set once another owner holds the execution (or nobody does): the run stops at its next write
        self.lost = threading.Event()
        self.next_renewal = time.monotonic() + lease_seconds / 3


class LeaseKeeper:
    """Renews the leases of this process's runs and notices cancels; started on first use."""

    def __init__(self) -> None:
        self._kept: dict[int, KeptLease] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._failing = False

    def keep(
        self, store: Store, execution_id: str, owner: str, lease_seconds: float, cancelled: threading.Event
    ) -> KeptLease:
        kept = KeptLease(store, execution_id, owner, lease_seconds, cancelled)
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the parent's thread does not exist here
                self._thread, self._kept, self._pid = None, {}, os.getpid()
            self._kept[id(kept)] = kept
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="taskloom-lease-keeper", daemon=True)
                self._thread.start()
        return kept

    def drop(self, kept: KeptLease) -> None:
        with self._lock:
            self._kept.pop(id(kept), None)

    def _loop(self) -> None:
        while True:
            time.sleep(CANCEL_POLL_SECONDS)
            with self._lock:
                kept = list(self._kept.values())
            for lease in kept:
                self._look_after(lease)

    def _look_after(self, lease: KeptLease) -> None:
        try:
            if time.monotonic() >= lease.next_renewal:
                lease.next_renewal = time.monotonic() + lease.lease_seconds / 3
                status = lease.store.renew_lease(lease.execution_id, lease.owner, lease.lease_seconds)
                if status is None:
                    lease.lost.set()
                    lease.cancelled.set()  # start nothing more; the next write raises LeaseLostError
                    return
            else:
                record = lease.store.get_execution(lease.execution_id)
                status = record.status if record is not None else None
        except Exception as error:
            if not self._failing:
                log.warning("lease keeper: the store failed (%s); retrying while the runs go on", error)
            self._failing = True
            return
        if self._failing:
            log.info("lease keeper: the store answers again")
            self._failing = False
        if status == ExecutionStatus.CANCELLED:
            lease.cancelled.set()


#: the keeper of this process
keeper = LeaseKeeper()
