"""The store's records that a workflow run never makes: messages, schedules, queues, expired deadlines.

Kept apart from :mod:`taskloom.store.base`, which re-exports them (``from taskloom.store.base import
QueueRecord`` still works): making a dataclass compiles its methods, about 1 ms each of the start of every
process that imports it, and a one-step workflow process imports the store (issue 12). The stores import
this module where they make one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message sent to an execution (``taskloom.send``); ``value`` is still encoded.

    ``received_step`` is the id of the ``receive`` step that took it, None while it is unread.
    """

    seq: int
    execution_id: str
    topic: str
    value: bytes | None
    sent_at: float
    received_step: str | None = None
    received_at: float | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """One row of the schedules table (``input`` still encoded); see :mod:`taskloom.schedules`.

    ``last_tick`` (seconds since the epoch) is how far the schedule has been handled: every tick up to it
    was started or, per ``catchup``, skipped; the next look starts after it.
    """

    name: str
    workflow: str
    target: str | None
    cron: str
    timezone: str
    input: bytes | None
    catchup: str
    paused: bool
    last_tick: float
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ScheduleRecord:
        """From ``SCHEDULE_COLUMNS``; SQLite answers 0/1 for ``paused`` and memoryview-free bytes."""
        name, workflow, target, cron, timezone, input, catchup, paused, last_tick, created, updated = row
        blob = None if input is None else bytes(input)
        return cls(
            name, workflow, target, cron, timezone, blob, catchup, bool(paused), float(last_tick), created, updated
        )


@dataclass(frozen=True, slots=True)
class QueueRecord:
    """One queue as the store knows it (:mod:`taskloom.queues`): its limits (None: none) and, when listed,
    how many of its executions are ``queued`` (its depth) and ``running`` now.

    A queue is listed when it was declared (a row of the queues table) or has unfinished executions.
    """

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    rate_count: int | None = None
    rate_seconds: float | None = None
    queued: int = 0
    running: int = 0


@dataclass(frozen=True, slots=True)
class Expired:
    """What :meth:`Store.expire_executions` did: the executions it failed, and the earliest deadline still
    ahead among the unfinished executions of those workflows (None: none), for an idle worker to wake at."""

    failed: tuple[str, ...]
    next_deadline: float | None
