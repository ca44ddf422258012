"""Schedules: start a workflow on a cron, durably, exactly once per tick across every process.

A schedule is a row of the store (``@workflow(schedule=...)``, registered by each worker that imports
the workflow, or ``wf.schedule(...)``), not state in some process: it survives restarts, and every
``taskloom worker`` serving its workflow runs a :class:`Ticker` for it. However many tickers look at
one schedule, each tick starts one execution, by two rules:

1. the tick's execution id derives from the schedule's name and the tick's time
   (:func:`~taskloom.schedule_ticks.tick_execution_id`), and the store's primary key lets only one
   process create it: a conflict means another ticker started that tick;
2. only after every due tick's execution exists is the schedule's ``last_tick`` advanced, by a
   compare-and-set. A ticker that dies between the two leaves ``last_tick`` behind; the next one
   finds the same ticks due, meets their executions (conflicts) and advances. Nothing is lost or
   doubled, and the compare-and-set keeps a slow ticker from moving ``last_tick`` back.

The tick's time is recorded with the execution's ``execution_started`` event, so the workflow reads it
as ``ctx.scheduled_at`` in every run of it: after a replay, a resume, or on another worker.

Ticks that fell while nothing ran are caught up per the schedule's ``catchup``
(:func:`~taskloom.schedule_ticks.due_ticks`). A paused schedule starts nothing; resuming it skips the
ticks that fell meanwhile. Without workers (the embedded default) nothing ticks by itself:
:func:`run_schedules` is the worker and ticker of one process, for as long as it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from taskloom import serde
from taskloom.errors import ExecutionStateError
from taskloom.events import Event, EventType
from taskloom.schedule_ticks import Cron, ScheduleError, check_catchup, due_ticks, tick_execution_id, zone
from taskloom.store.base import ExecutionStatus, Store
from taskloom.store.records import ScheduleRecord

if TYPE_CHECKING:
    from taskloom.workflow import Workflow

log = logging.getLogger("taskloom.schedules")

#: The longest a ticker sleeps: a schedule created, changed or resumed elsewhere is seen within this.
POLL_SECONDS = 5.0
#: A ticker wakes this long after a tick's time, so that the tick has surely fallen by its clock.
WAKE_MARGIN_SECONDS = 0.002


@dataclass(frozen=True)
class Schedule:
    """A schedule as users see it (``wf.schedule(...)``, ``taskloom schedules list``)."""

    name: str
    workflow: str
    cron: str
    timezone: str
    catchup: str
    paused: bool
    input: Any
    #: every tick up to this one was started or skipped
    last_tick: datetime
    #: the next tick to start, or None (paused, or an expression that never fires again)
    next_tick: datetime | None

    @classmethod
    def from_record(cls, record: ScheduleRecord) -> Schedule:
        next_tick = None if record.paused else _next_tick(record)
        return cls(
            record.name,
            record.workflow,
            record.cron,
            record.timezone,
            record.catchup,
            record.paused,
            _decoded_input(record),
            _moment(record.last_tick, record.timezone),
            None if next_tick is None else _moment(next_tick, record.timezone),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "workflow": self.workflow,
            "cron": self.cron,
            "timezone": self.timezone,
            "catchup": self.catchup,
            "paused": self.paused,
            "input": serde.json_view(self.input),
            "last_tick": self.last_tick.isoformat(),
            "next_tick": None if self.next_tick is None else self.next_tick.isoformat(),
        }


# -- declaring -----------------------------------------------------------------------------------------
def check_schedule(cron: Any, timezone: Any = "UTC", catchup: Any = "latest", *, owner: str = "schedule") -> Cron:
    """Validate a schedule's arguments where they are written; a ScheduleError names the one at fault."""
    if not isinstance(cron, str) or not cron.strip():
        raise ScheduleError(f"{owner}: cron must be a cron expression such as '*/5 * * * *', got {cron!r}")
    if not isinstance(timezone, str):
        raise ScheduleError(f"{owner}: timezone must be an IANA time zone name such as 'UTC', got {timezone!r}")
    if not isinstance(catchup, str):
        raise ScheduleError(f"{owner}: catchup must be one of latest, all, none, got {catchup!r}")
    try:
        check_catchup(catchup)
        return Cron(cron, timezone)
    except ScheduleError as error:
        raise ScheduleError(f"{owner}: {error}") from None


def upsert_schedule(
    store: Store,
    workflow: Workflow[Any],
    cron: str,
    *,
    input: Any = None,
    name: str | None = None,
    timezone: str = "UTC",
    catchup: str = "latest",
    now: float | None = None,
) -> Schedule:
    """Create or change the schedule ``name`` (default: the workflow's name) of ``workflow``.

    A new schedule's first tick is the first one after ``now``; a changed one keeps its last tick (and
    whether it is paused), so changing the cron neither repeats nor skips what was already handled.
    """
    if name is None:
        name = workflow.name
    if not isinstance(name, str) or not name.strip():
        raise ScheduleError(f"workflow {workflow.name!r}: a schedule's name must be a non-empty string, got {name!r}")
    check_schedule(cron, timezone, catchup, owner=f"schedule {name!r}")
    blob = serde.dumps(input, what=f"input of schedule {name!r}")
    moment = time.time() if now is None else now
    record = store.upsert_schedule(name, workflow.name, workflow.target, cron, timezone, blob, catchup, now=moment)
    if record is None:
        other = store.get_schedule(name)
        owner = other.workflow if other is not None else "another workflow"
        raise ScheduleError(
            f"schedule {name!r} belongs to workflow {owner!r}, not {workflow.name!r}: give this one another "
            f"name (name=...), or remove that one first (taskloom schedules remove {name})"
        )
    return Schedule.from_record(record)


def declare_schedules(store: Store, workflows: Iterable[Workflow[Any]], *, now: float | None = None) -> list[Schedule]:
    """Register (upsert) the schedules declared with ``@workflow(schedule=...)``: what a worker does at start."""
    declared = []
    for wf in workflows:
        cron = wf.declared_schedule
        if cron is not None:
            declared.append(upsert_schedule(store, wf, cron.expression, timezone=cron.timezone, now=now))
    return declared


def _schedule_named(store: Store, name: str) -> ScheduleRecord:
    record = store.get_schedule(name)
    if record is None:
        known = ", ".join(r.name for r in store.list_schedules()) or "none"
        raise ScheduleError(f"no schedule named {name!r} (schedules: {known})")
    return record


def pause_schedule(store: Store, name: str, *, now: float | None = None) -> Schedule:
    """Stop starting executions for ``name`` until :func:`resume_schedule`; running ones go on."""
    _schedule_named(store, name)
    record = store.set_schedule_paused(name, True, now=time.time() if now is None else now)
    return Schedule.from_record(record or _schedule_named(store, name))


def resume_schedule(store: Store, name: str, *, now: float | None = None) -> Schedule:
    """Start ticking ``name`` again from ``now``: the ticks that fell while it was paused are skipped."""
    _schedule_named(store, name)
    record = store.set_schedule_paused(name, False, now=time.time() if now is None else now)
    return Schedule.from_record(record or _schedule_named(store, name))


def remove_schedule(store: Store, name: str) -> None:
    """Delete ``name``; the executions it started stay. A worker whose code still declares it with
    ``@workflow(schedule=...)`` registers it again when it starts."""
    if not store.delete_schedule(name):
        _schedule_named(store, name)  # raises, naming the schedules there are


def list_schedules(store: Store) -> list[Schedule]:
    return [Schedule.from_record(record) for record in store.list_schedules()]


# -- ticking -------------------------------------------------------------------------------------------
@dataclass
class TickPass:
    """What one :func:`tick` did: the executions it created, and when the next tick of its schedules falls."""

    started: list[str]
    next_due: float | None


def tick(store: Store, workflows: Sequence[str] | None, now: float) -> TickPass:
    """Start the due ticks of the schedules of ``workflows`` (all when None) as of ``now``.

    Each schedule is handled on its own: a schedule that fails (its stored cron no longer parses) is
    logged and skipped, the others still tick. A store error is raised, with ``last_tick`` left where it
    was: the next pass starts the same ticks, whose executions may already exist (conflicts).
    """
    started: list[str] = []
    next_due: float | None = None
    for record in store.list_schedules(workflows):
        if record.paused:
            continue
        try:
            cron = Cron(record.cron, record.timezone)
            catchup = check_catchup(record.catchup)
        except ScheduleError as error:
            log.error("schedule %r: %s; not ticking it", record.name, error)
            continue
        ticks, after = due_ticks(cron, record.last_tick, now, catchup)
        for moment in ticks:
            if start_tick(store, record, moment):
                started.append(tick_execution_id(record.name, moment))
        if after != record.last_tick and not store.advance_schedule(record.name, record.last_tick, after):
            log.debug("schedule %r: another process advanced it first", record.name)
        following = cron.after(after)
        if following is not None and (next_due is None or following < next_due):
            next_due = following
    return TickPass(started, next_due)


def start_tick(store: Store, record: ScheduleRecord, moment: float) -> bool:
    """Create the execution of ``record``'s tick at ``moment``, queued for a worker; False when it exists."""
    execution_id = tick_execution_id(record.name, moment)
    started = {"schedule": record.name, "scheduled_at": moment, "timezone": record.timezone}
    try:
        store.create_execution(
            execution_id,
            record.workflow,
            record.input,
            ExecutionStatus.QUEUED,
            record.target,
            started_data=started,
        )
    except ExecutionStateError:
        return False  # another process started this tick
    log.info("schedule %r: started execution %s", record.name, execution_id)
    return True


class Ticker:
    """Ticks the schedules of ``workflows`` from a thread of its own, until :meth:`stop`.

    It wakes when the next tick of those schedules falls (or after :data:`POLL_SECONDS`, to see new,
    changed and resumed schedules), so a one-second schedule ticks on time. Any number of tickers may
    run against one store: see the module docstring. ``clock`` is for tests.
    """

    def __init__(
        self,
        store: Store,
        workflows: Sequence[str],
        *,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.workflows = list(workflows)
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="taskloom-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Start no more ticks; with ``wait``, return once the thread has ended (a pass in progress
        finishes first, so its ticks are advanced)."""
        self._stopped.set()
        if wait and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._stopped.wait(self._one_pass())

    def _one_pass(self) -> float:
        """Tick once; how long to sleep before the next pass."""
        try:
            done = tick(self.store, self.workflows, self.clock())
        except Exception as error:
            log.warning("schedules: a pass failed (%s); trying again in %gs", error, self.poll_seconds)
            return self.poll_seconds
        if done.next_due is None:
            return self.poll_seconds
        return min(self.poll_seconds, max(0.0, done.next_due - self.clock()) + WAKE_MARGIN_SECONDS)


def start_ticker(store: Store, workflows: Mapping[str, Workflow[Any]]) -> Ticker:
    """Register the declared schedules of ``workflows`` and tick all of theirs: a worker's start."""
    declared = declare_schedules(store, workflows.values())
    for schedule in declared:
        log.info("schedule %r: %s (%s) starts %r", schedule.name, schedule.cron, schedule.timezone, schedule.workflow)
    return Ticker(store, sorted(workflows)).start()


def run_schedules(*workflows: Workflow[Any], seconds: float | None = None, store: Store | None = None) -> None:
    """Run the schedules of ``workflows`` in this process: a ticker and a worker, for ``seconds`` (None:
    until Ctrl-C).

    For programs without ``taskloom worker`` processes (the embedded default), where nothing else would
    start a tick. The schedules declared with ``@workflow(schedule=...)`` are registered first. It may
    run in several processes at once, next to workers or not: each tick still starts once. Executions
    still running when it returns are finished first (their steps are durable either way).
    """
    from taskloom.settings import WorkerSettings
    from taskloom.store import default_store
    from taskloom.worker import Worker

    if not workflows:
        raise ScheduleError("run_schedules: name the workflows whose schedules to run")
    if seconds is not None and not seconds > 0:
        raise ScheduleError(f"run_schedules: seconds must be a positive number or None, got {seconds!r}")
    store = store or default_store()
    by_name = {wf.name: wf for wf in workflows}
    worker = Worker(by_name, WorkerSettings(poll_seconds=0.2), store=store)
    ticker = start_ticker(store, by_name)
    timer = None if seconds is None else threading.Timer(seconds, worker.stop)
    try:
        if timer is not None:
            timer.daemon = True
            timer.start()
        worker.run()
    finally:
        ticker.stop()
        if timer is not None:
            timer.cancel()


# -- reading a tick back -------------------------------------------------------------------------------
def scheduled_at(events: Sequence[Event]) -> datetime | None:
    """The tick an execution was started for, from its started event, in its schedule's time zone."""
    started = next((e for e in events if e.type is EventType.EXECUTION_STARTED), None)
    if started is None or "scheduled_at" not in started.data:
        return None
    return _moment(float(started.data["scheduled_at"]), str(started.data.get("timezone") or "UTC"))


def _moment(seconds: float, timezone: str) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, zone(timezone))
    except ScheduleError:  # a zone this machine does not know: still the right instant
        return datetime.fromtimestamp(seconds, UTC)


def _next_tick(record: ScheduleRecord) -> float | None:
    try:
        return Cron(record.cron, record.timezone).after(max(record.last_tick, time.time()))
    except ScheduleError:
        return None


def _decoded_input(record: ScheduleRecord) -> Any:
    try:
        return serde.loads(record.input)
    except Exception as error:  # a class this process cannot import
        return f"<undecodable: {type(error).__name__}: {error}>"
