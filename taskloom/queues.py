"""Queues: named lines of executions with priorities and limits that hold across every worker.

``Queue("emails", concurrency=2, worker_concurrency=1, rate_limit=(10, 1.0))`` declares a queue in code;
``wf.start(input, queue="emails", priority=p)`` puts an execution on it (lower ``priority`` runs first,
then the oldest); ``taskloom worker MODULE --queue emails`` serves it. Every execution is on exactly one
queue: :data:`DEFAULT_QUEUE` unless started with ``queue=``, and a program that declares no queue sees
no change at all.

The limits are not kept by any one process: a declaration reaches the store (the ``queues`` table) when
a worker whose code declares it starts, or a start names it, and every claim
(:meth:`~taskloom.store.base.Store.claim_next_execution`) checks them inside its transaction, so they
hold across workers and machines:

- ``concurrency``: at most this many executions of the queue are ``running`` at once, anywhere. A
  ``running`` execution counts until it ends, pauses or is put back, also while its worker is dead and
  its lease not yet taken over; a paused (sleeping, waiting for a message or a resume) one holds no
  slot. Taking over a dead worker's execution adds nothing (it was counted already), so it is not held
  back by this limit.
- ``worker_concurrency``: at most this many running executions of the queue per worker.
- ``rate_limit=(count, seconds)``: at most ``count`` claims in any window of ``seconds``. Every claim
  counts as a start: a first start, a wake-up after a pause and a takeover alike, since each runs code
  that may call whatever the limit protects.

A worker without ``--queue`` serves :data:`DEFAULT_QUEUE` and every queue its code declares; with
``--queue`` (repeatable) only those named. An execution on a queue no worker serves stays ``queued``;
``taskloom queues`` shows it in that queue's depth.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskloom.errors import TaskloomError
from taskloom.store.base import DEFAULT_QUEUE, Store
from taskloom.store.records import QueueRecord

#: longest queue name, as the API accepts it
MAX_QUEUE_NAME = 200


class QueueError(TaskloomError, ValueError):
    """A queue declared or named wrongly; the message names the argument and what it must be."""


@dataclass(frozen=True, slots=True)
class Queue:
    """A named queue and its limits (None: no limit). Declaring one registers it in this process; a worker
    whose code declares it writes it to the store, where every claim reads the limits."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_limit: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_queue_name(self.name))
        for argument in ("concurrency", "worker_concurrency"):
            _check_count(argument, getattr(self, argument))
        if self.rate_limit is not None:
            object.__setattr__(self, "rate_limit", _check_rate(self.rate_limit))
        if (
            self.concurrency is not None
            and self.worker_concurrency is not None
            and self.worker_concurrency > self.concurrency
        ):
            raise QueueError(
                f"Queue {self.name!r}: worker_concurrency={self.worker_concurrency} is more than "
                f"concurrency={self.concurrency}; it could never be reached"
            )
        _registry.add(self)

    def record(self) -> QueueRecord:
        """The queue as the store keeps it (without counts)."""
        count, seconds = self.rate_limit if self.rate_limit is not None else (None, None)
        return QueueRecord(self.name, self.concurrency, self.worker_concurrency, count, seconds)


def check_queue_name(name: object, argument: str = "Queue name") -> str:
    """``name`` if it can name a queue; a :class:`QueueError` naming ``argument`` else."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name or len(name) > MAX_QUEUE_NAME:
        raise QueueError(
            f"{argument} must be a queue name: a non-blank string of at most {MAX_QUEUE_NAME} characters, got {name!r}"
        )
    return name


def check_priority(priority: object) -> int:
    """``priority`` if it is an integer (lower runs first); a :class:`QueueError` naming it else."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not -(2**31) <= priority < 2**31:
        raise QueueError(f"priority must be an integer (lower runs first) within 32 bits, got {priority!r}")
    return priority


def _check_count(argument: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise QueueError(f"Queue {argument} must be a positive integer or None (no limit), got {value!r}")


def _check_rate(rate: object) -> tuple[int, float]:
    if isinstance(rate, tuple | list) and len(rate) == 2:
        count, seconds = rate[0], rate[1]
        if (
            isinstance(count, int)
            and not isinstance(count, bool)
            and count >= 1
            and isinstance(seconds, int | float)
            and not isinstance(seconds, bool)
            and math.isfinite(seconds)
            and seconds > 0
        ):
            return (count, float(seconds))
    raise QueueError(
        f"Queue rate_limit must be (count, seconds): a positive integer and a positive number of seconds, got {rate!r}"
    )


class _Registry:
    """The queues declared in this process, by name: what a worker without ``--queue`` serves and registers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, Queue] = {}

    def add(self, queue: Queue) -> None:
        with self._lock:
            known = self._queues.get(queue.name)
            if known is not None and known != queue:
                raise QueueError(
                    f"Queue {queue.name!r} is declared twice with different limits ({known} and {queue}); "
                    "declare it once and import it where it is needed"
                )
            self._queues[queue.name] = queue

    def get(self, name: str) -> Queue | None:
        with self._lock:
            return self._queues.get(name)

    def all(self) -> list[Queue]:
        with self._lock:
            return sorted(self._queues.values(), key=lambda queue: queue.name)


_registry = _Registry()


def declared_queues() -> list[Queue]:
    """Every queue declared in this process so far, by name."""
    return _registry.all()


def served_queues(names: Sequence[str] = ()) -> list[str]:
    """The queues a worker serves: ``names`` (its ``--queue`` flags) if any, else the default queue and
    every queue declared in its code."""
    if names:
        return sorted({check_queue_name(name, "--queue") for name in names})
    return sorted({DEFAULT_QUEUE, *(queue.name for queue in declared_queues())})


def register_queues(store: Store, queues: Iterable[Queue]) -> None:
    """Write the declarations of ``queues`` to the store, where every claim reads their limits.

    The latest registration wins: a deploy that changes a queue's limits changes them for every worker.
    """
    for queue in queues:
        store.upsert_queue(queue.record())


def queue_name(queue: str | Queue | None) -> str:
    """The queue an execution started with ``queue=`` goes on: a :class:`Queue`'s name, a name, or the
    default."""
    if queue is None:
        return DEFAULT_QUEUE
    if isinstance(queue, Queue):
        return queue.name
    return check_queue_name(queue, "queue=")


def named_declaration(name: str) -> Queue | None:
    """The queue ``name`` as declared in this process, if it is."""
    return _registry.get(name)


def queue_view(queue: QueueRecord) -> dict[str, Any]:
    """One queue as the API, the CLI's ``--json`` and the dashboard show it."""
    rate = None
    if queue.rate_count is not None and queue.rate_seconds is not None:
        rate = {"count": queue.rate_count, "seconds": queue.rate_seconds}
    return {
        "name": queue.name,
        "concurrency": queue.concurrency,
        "worker_concurrency": queue.worker_concurrency,
        "rate_limit": rate,
        "queued": queue.queued,
        "running": queue.running,
    }


def queue_line(view: Mapping[str, Any]) -> str:
    """One queue (:func:`queue_view`'s shape, local or from the API) on one line, for ``taskloom queues``."""
    limits = []
    if view["concurrency"] is not None:
        limits.append(f"concurrency {view['concurrency']}")
    if view["worker_concurrency"] is not None:
        limits.append(f"per worker {view['worker_concurrency']}")
    if view["rate_limit"] is not None:
        limits.append(f"rate {view['rate_limit']['count']}/{view['rate_limit']['seconds']:g}s")
    return f"{view['name']}  queued {view['queued']}  running {view['running']}  {', '.join(limits) or 'no limits'}"


__all__ = [
    "DEFAULT_QUEUE",
    "Queue",
    "QueueError",
    "QueueRecord",
    "check_priority",
    "check_queue_name",
    "declared_queues",
    "named_declaration",
    "queue_line",
    "queue_name",
    "queue_view",
    "register_queues",
    "served_queues",
]
