"""The Store protocol: a dozen domain methods, each one transaction, taking values already encoded.

Nothing above this layer writes SQL. Every concrete store (SQLite, PostgreSQL) passes the same contract
suite in ``tests/store``.

Every method may raise, besides the domain errors it documents, only
:class:`~taskloom.errors.StoreUnavailableError` (a transient fault outlasted the retry budget: the same
call may succeed later) or :class:`~taskloom.errors.StoreError` (a fault waiting does not cure, named with
the fix); never a driver's exception (:mod:`taskloom.store.faults`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from taskloom.errors import ExecutionStateError, StoreError, TaskloomError
from taskloom.events import STEP_OUTCOMES, Event, EventType, NewEvent
from taskloom.lazy import module_dir, module_getattr
from taskloom.plain_values import PlainValue
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, Protocol

    from taskloom.store.records import Expired, MessageRecord, QueueRecord, ScheduleRecord
else:
    from taskloom.typing_free import Protocol

#: records a workflow run never makes, loaded on first use (taskloom.store.records)
_LAZY = dict.fromkeys(("Expired", "MessageRecord", "QueueRecord", "ScheduleRecord"), "taskloom.store.records")
__getattr__ = module_getattr(globals(), _LAZY)
__dir__ = module_dir(globals(), _LAZY)

#: the queue of every execution started without ``queue=`` (see :mod:`taskloom.queues`)
DEFAULT_QUEUE = "default"
#: the seq of the message an execution was already sent with an idempotency key (``%s`` placeholders:
#: SQLite's store swaps them for ``?``); see :meth:`Store.send_message`
SENT_WITH_KEY = "SELECT seq FROM messages WHERE execution_id = %s AND idempotency_key = %s"


class ExecutionStatus:
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    QUEUED = "queued"

    FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})
    ALL = (QUEUED, RUNNING, PAUSED, COMPLETED, FAILED, CANCELLED)


class ExecutionRecord(PlainValue):
    """One row of the executions table; ``input``/``output`` are still encoded.

    Treat it as read-only (:meth:`replace` makes a changed copy). It is not made read-only because that
    sets each field through ``object.__setattr__``: 3.8 µs a row against 0.5 µs, most of what a page of 50
    executions costs above its bare SELECT (benchmarks/bench_history.py). Not a dataclass either, which
    compiled its methods at import (see :mod:`taskloom.plain_values`).
    """

    _fields = (
        "id",
        "workflow",
        "status",
        "input",
        "output",
        "created_at",
        "updated_at",
        "target",
        "lease_owner",
        "lease_expires_at",
        "crashes",
        "wake_at",
        "parent_id",
        "version",
        "queue",
    )
    __slots__ = _fields

    id: str
    workflow: str
    status: str
    input: bytes | None
    output: bytes | None
    created_at: float
    updated_at: float
    target: str | None
    #: the process (worker or embedded run) that holds the execution, and until when; None when free
    lease_owner: str | None
    lease_expires_at: float | None
    #: how many times a holder of the execution died (or a task exited the process) while running it
    crashes: int
    #: a paused execution's deadline, or a queued one's not-before time (``wf.start(delay=...)``); None else
    wake_at: float | None
    #: the execution that started this one as a child (``started_data["parent_id"]``); None for a top-level one
    parent_id: str | None
    #: the workflow version it runs on (taskloom.versioning): ``""`` none, None not pinned yet (no code ran it)
    version: str | None
    #: the queue it is run from (taskloom.queues): what limits it, which workers take it; its children's too
    queue: str

    def __init__(
        self,
        id: str,
        workflow: str,
        status: str,
        input: bytes | None,
        output: bytes | None,
        created_at: float,
        updated_at: float,
        target: str | None = None,
        lease_owner: str | None = None,
        lease_expires_at: float | None = None,
        crashes: int = 0,
        wake_at: float | None = None,
        parent_id: str | None = None,
        version: str | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> None:
        self.id = id
        self.workflow = workflow
        self.status = status
        self.input = input
        self.output = output
        self.created_at = created_at
        self.updated_at = updated_at
        self.target = target
        self.lease_owner = lease_owner
        self.lease_expires_at = lease_expires_at
        self.crashes = crashes
        self.wake_at = wake_at
        self.parent_id = parent_id
        self.version = version
        self.queue = queue


#: Builds, inside the transaction that takes a message, the events recording its receipt: from the
#: message's ``(seq, value)`` to the events appended with it (see :meth:`Store.receive_message`).
ReceiptEvents = Callable[[int, bytes | None], Sequence[NewEvent]]


class Acquired:
    """What :meth:`Store.acquire_execution` found and did.

    ``record`` is the row as it was before the call (with its lease), so the caller can tell a fresh start
    from a takeover after a crash; ``taken`` says whether the caller now holds the lease. A plain class,
    not a dataclass: making a dataclass compiles its methods, about 1 ms of every process's start.
    """

    __slots__ = ("record", "taken")

    def __init__(self, record: ExecutionRecord, taken: bool) -> None:
        self.record, self.taken = record, taken


#: the columns of the queues table in :class:`QueueRecord`'s order (the limits)
QUEUE_COLUMNS = "name, concurrency, worker_concurrency, rate_count, rate_seconds"


#: every declared queue and every queue with unfinished executions, by name: its limits, then how many of
#: its executions are queued and running (the same SQL in both dialects)
LIST_QUEUES = (
    "SELECT names.name, q.concurrency, q.worker_concurrency, q.rate_count, q.rate_seconds, "
    "COALESCE(c.queued, 0), COALESCE(c.running, 0) FROM "
    "(SELECT name FROM queues UNION "
    " SELECT DISTINCT queue FROM executions WHERE status IN ('queued', 'running', 'paused')) AS names "
    "LEFT JOIN queues AS q ON q.name = names.name "
    "LEFT JOIN (SELECT queue, SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) AS queued, "
    "  SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END) AS running "
    "  FROM executions WHERE status IN ('queued', 'running') GROUP BY queue) AS c ON c.queue = names.name "
    "ORDER BY names.name"
)


#: create or change a queue's limits (``%s`` placeholders: SQLite's store swaps them for ``?``)
UPSERT_QUEUE = (
    f"INSERT INTO queues ({QUEUE_COLUMNS}, updated_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO "
    "UPDATE SET concurrency = excluded.concurrency, worker_concurrency = excluded.worker_concurrency, "
    "rate_count = excluded.rate_count, rate_seconds = excluded.rate_seconds, updated_at = excluded.updated_at"
)


def queue_limits(queue: QueueRecord) -> tuple[str, int | None, int | None, int | None, float | None]:
    """``queue``'s values in :data:`QUEUE_COLUMNS` order, for an upsert."""
    return (queue.name, queue.concurrency, queue.worker_concurrency, queue.rate_count, queue.rate_seconds)


def queue_listing(rows: Iterable[Sequence[Any]]) -> list[QueueRecord]:
    """:data:`LIST_QUEUES`' rows as records (PostgreSQL answers its sums as decimals)."""
    from taskloom.store.records import QueueRecord

    return [
        QueueRecord(
            name, concurrency, workers, count, None if seconds is None else float(seconds), int(queued), int(running)
        )
        for name, concurrency, workers, count, seconds, queued, running in rows
    ]


def open_queues(
    limits: Sequence[QueueRecord], counts: Callable[[QueueRecord], tuple[int, int, int]]
) -> tuple[list[str], list[str]]:
    """Of the limited queues ``limits``, those a claim may take a new execution from, and those it may
    only take over a dead worker's running execution from (at their global ``concurrency``, which a
    takeover does not change); the rest are closed for this claim.

    ``counts(queue)`` is ``(running, running for this worker, claims within the rate window)``, read
    inside the claim's transaction (see :mod:`taskloom.queues` for what counts).
    """
    fresh, takeover = [], []
    for queue in limits:
        running, mine, started = counts(queue)
        if queue.worker_concurrency is not None and mine >= queue.worker_concurrency:
            continue
        if queue.rate_count is not None and started >= queue.rate_count:
            continue
        if queue.concurrency is not None and running >= queue.concurrency:
            takeover.append(queue.name)
        else:
            fresh.append(queue.name)
    return fresh, takeover


def queue_filter(
    queues: Sequence[str] | None,
    limits: Sequence[QueueRecord],
    fresh: Sequence[str],
    takeover: Sequence[str],
    mark: str,
) -> tuple[str, list[Any]]:
    """The claim's ``AND ...`` condition on the executions' queue, and its parameters (``mark`` is the
    dialect's placeholder): on ``queues`` (None: any), not on a closed limited queue, and only a takeover
    (status ``running``) on one of ``takeover`` (see :func:`open_queues`)."""
    sql, params = "", []
    if queues is not None:
        sql += f" AND queue IN ({', '.join(mark for _ in queues)})"
        params += list(queues)
    closed = [queue.name for queue in limits if queue.name not in fresh and queue.name not in takeover]
    if closed:
        sql += f" AND queue NOT IN ({', '.join(mark for _ in closed)})"
        params += closed
    if takeover:
        sql += f" AND (status = 'running' OR queue NOT IN ({', '.join(mark for _ in takeover)}))"
        params += list(takeover)
    return sql, params


#: Builds, inside the transaction that fails an execution past its deadline, what records the failure:
#: from ``(execution_id, workflow, deadline)`` to its ``execution_failed`` event and the encoded error that
#: becomes the execution's output (see :meth:`Store.expire_executions` and :mod:`taskloom.deadlines`).
DeadlineFailure = Callable[[str, str, float], tuple[NewEvent, bytes]]

_UNFINISHED = "status IN ('queued', 'running', 'paused')"
#: ``%s`` placeholders below: SQLite's store swaps them for ``?``. ``{lock}`` is the dialect's row lock.
FIX_DEADLINE = "UPDATE executions SET deadline = COALESCE(deadline, created_at + %s) WHERE id = %s RETURNING deadline"
_STAMP_DEADLINES = (
    "UPDATE executions SET deadline = created_at + %s WHERE id IN (SELECT id FROM executions "
    f"WHERE workflow = %s AND deadline IS NULL AND {_UNFINISHED}{{lock}})"
)
#: past the deadline and nobody runs it: queued, paused, or running under no lease or an expired one
_PAST_DEADLINE = (
    f"SELECT id, deadline FROM executions WHERE workflow = %s AND deadline IS NOT NULL AND deadline <= %s "
    f"AND {_UNFINISHED} AND (status <> 'running' OR lease_expires_at IS NULL OR lease_expires_at < %s){{lock}}"
)
_FAIL_PAST_DEADLINE = (
    "UPDATE executions SET status = 'failed', output = %s, updated_at = %s, wake_at = NULL, lease_owner = NULL, "
    "lease_expires_at = NULL WHERE id = %s"
)
_NEXT_DEADLINE = (
    f"SELECT MIN(deadline) FROM executions WHERE workflow = %s AND deadline IS NOT NULL AND deadline > %s "
    f"AND {_UNFINISHED}"
)


def expire_in_transaction(
    execute: Callable[[str, Sequence[Any]], Any],
    insert_events: Callable[[str, Sequence[NewEvent]], Any],
    lock: str,
    timeouts: Mapping[str, float],
    now: float,
    failure: DeadlineFailure,
) -> Expired:
    """:meth:`Store.expire_executions` inside one open transaction, for both dialects: ``execute(sql,
    params)`` runs a statement (``%s`` placeholders) and returns its cursor, ``insert_events`` appends
    events, and ``lock`` (``" FOR UPDATE SKIP LOCKED"`` on PostgreSQL, nothing under SQLite's database
    lock) keeps the rows read until the commit, skipping those a live owner is writing."""
    failed: list[str] = []
    ahead: list[float] = []
    for workflow, timeout in timeouts.items():
        execute(_STAMP_DEADLINES.format(lock=lock), (timeout, workflow))
        for execution_id, deadline in execute(_PAST_DEADLINE.format(lock=lock), (workflow, now, now)).fetchall():
            event, output = failure(execution_id, workflow, float(deadline))
            execute(_FAIL_PAST_DEADLINE, (output, now, execution_id))
            insert_events(execution_id, [event])
            failed.append(execution_id)
        (earliest,) = execute(_NEXT_DEADLINE, (workflow, now)).fetchone()
        if earliest is not None:
            ahead.append(float(earliest))
    from taskloom.store.records import Expired

    return Expired(tuple(failed), min(ahead, default=None))


#: the columns of the schedules table in :class:`ScheduleRecord`'s order
SCHEDULE_COLUMNS = "name, workflow, target, cron, timezone, input, catchup, paused, last_tick, created_at, updated_at"


class Store(Protocol):
    url: str

    def create_execution(
        self,
        execution_id: str,
        workflow: str,
        input: bytes | None,
        status: str,
        target: str | None = None,
        *,
        lease_owner: str | None = None,
        lease_seconds: float | None = None,
        started_data: Mapping[str, Any] | None = None,
        wake_at: float | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        version: str | None = None,
    ) -> None:
        """Insert a new execution together with its ``execution_started`` event.

        ``started_data`` (JSON-able) is kept as that event's ``data``: facts fixed when the execution is
        created, readable by every run of it in any process (a schedule's tick: ``ctx.scheduled_at``). Its
        ``"parent_id"`` (a child workflow's parent, :mod:`taskloom.children`) is kept in the execution's row too.

        ``target`` is ``"module:qualname"`` of the workflow, so another process can import and resume it.
        With ``lease_seconds`` the execution starts leased (to ``lease_owner``, which may be None) until
        ``now + lease_seconds``: no worker claims a just-created running execution before its creator
        starts driving it. ``wake_at`` (a queued execution) is the time before which no worker claims it
        (``wf.start(delay=...)``). ``queue`` and ``priority`` place a queued one for the claim
        (:mod:`taskloom.queues`: lower ``priority`` first). ``version`` pins it to its workflow's version
        (``""`` none) at once, for a creator that runs it; None leaves that to the first code that runs it
        (:meth:`pin_version`, :mod:`taskloom.versioning`). An id that already exists raises
        :class:`~taskloom.errors.ExecutionStateError` and writes nothing: the primary key decides, so of
        two callers creating one new id at the same time exactly one succeeds.
        """

    def get_execution(self, execution_id: str) -> ExecutionRecord | None: ...

    def load_events(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        """The execution's events in order (those with a seq above ``after_seq``), in one round trip.

        A seq numbers a stored row, not an event: a step's start and outcome written together share one
        (:func:`merge_steps`), the start first. A reader that follows the log with ``after_seq`` = the
        last seq it saw gets every event once; one that skips events by seq must skip only seqs below
        the last it saw, or a pair's second event is lost.
        """

    def append_events(
        self,
        execution_id: str,
        events: Sequence[NewEvent],
        *,
        status: str | None = None,
        output: bytes | None = None,
        expected_status: str | None = None,
        wake_at: float | None = None,
        lease_owner: str | None = None,
        wake_on_message: str | None = None,
    ) -> int:
        """Append ``events`` and, when given, set the execution's status/output, in one transaction.

        ``lease_owner`` fences a worker's writes: unless the execution is still leased to it, nothing is
        written and :class:`~taskloom.errors.LeaseLostError` is raised.
        ``wake_at`` (with ``status``) is when a paused execution's deadline passes; workers claim it then.
        With ``expected_status``, the execution must have that status when the transaction runs, else
        nothing is written and :class:`~taskloom.errors.ExecutionStateError` is raised: two callers that
        both saw the status (two resumes of one paused execution) cannot both succeed. Setting the status
        to ``queued`` wakes waiting workers (:meth:`wait_for_work`).
        ``wake_on_message`` (with status ``paused``) is the topic a ``receive`` waits for: if a message of
        it is already unread, ``wake_at`` becomes now (and workers are woken), so a message sent while the
        execution was pausing is never left waiting. The execution's row is locked as in
        :meth:`send_message`, so one of the two always sees the other.

        Returns the seq of the last event written. Durable when it returns.
        """

    def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 100,
        after: tuple[float, str] | None = None,
        id_prefix: str | None = None,
    ) -> list[ExecutionRecord]:
        """Newest first (``created_at`` descending, then ``id``); a ``limit`` below 1 is a
        :class:`~taskloom.errors.TaskloomError` naming it.

        ``after`` is the ``(created_at, id)`` of the last record of the previous page: the page that
        follows it (keyset pagination, so a deep page costs what the first does, on the ``created_at``
        indexes). ``id_prefix`` keeps the executions whose id starts with it.
        """

    # -- the work queue (workers) -------------------------------------------------------------------
    def acquire_execution(
        self, execution_id: str, owner: str, lease_seconds: float, *, from_statuses: Sequence[str]
    ) -> Acquired:
        """Take one execution by id, in one transaction: how ``wf.run(execution_id=...)`` starts driving it.

        It is taken (status ``running``, leased to ``owner`` until ``now + lease_seconds``, ``wake_at``
        cleared) only when its status is in ``from_statuses``, nobody else holds it (held means ``running``
        under a live lease of another owner) and it is not a queued execution whose not-before time
        (``wake_at``) is still ahead. Taking over a ``running`` execution whose holder's lease expired
        counts a crash (``crashes`` + 1). A missing id raises :class:`~taskloom.errors.ExecutionNotFoundError`.
        """

    def claim_next_execution(
        self,
        worker_id: str,
        lease_seconds: float,
        workflows: Sequence[str],
        *,
        queues: Sequence[str] | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> ExecutionRecord | None:
        """Atomically claim the oldest execution of one of ``workflows`` that is queued (and its not-before
        ``wake_at``, if any, has passed), running under a
        lease that expired (its holder died: ``crashes`` + 1) or with no lease at all (released unfinished,
        or written by an older taskloom), or paused with a deadline (``wake_at``) that has passed.
        The claim sets status ``running`` and a lease and clears ``wake_at``; the record returned is the row
        after the claim.

        Only executions on ``queues`` (None: any queue) are claimed, the lowest ``priority`` first, then the
        oldest; a queue whose limits (:meth:`upsert_queue`) would be exceeded is skipped, checked inside
        the claim's transaction so that the limits hold across workers (:mod:`taskloom.queues`). The claim
        records its time (``claimed_at``) and, for a rate-limited queue, counts as one start.

        ``versions`` (workflow name -> the version the caller's code has, ``""`` for none) claims only
        executions of those versions, or not pinned to one yet (:mod:`taskloom.versioning`)."""

    def renew_lease(self, execution_id: str, owner: str, lease_seconds: float) -> str | None:
        """Extend ``owner``'s lease on one execution to ``now + lease_seconds`` and return its status.

        A lease that passed but that nobody took over is still ``owner``'s and is renewed. None means
        ``owner`` no longer holds the execution (another process took it over, or it was released): stop.
        A status other than ``running`` (``cancelled``) tells the holder its execution changed under it.
        """

    def release_execution(
        self,
        execution_id: str,
        owner: str,
        *,
        requeue: bool,
        crashed: bool = False,
        retry_after: float | None = None,
    ) -> None:
        """Drop ``owner``'s lease; ``requeue`` puts an unfinished execution back in the queue (and wakes
        workers); ``crashed`` counts a crash (a task exited the process inside the run). Nothing happens
        unless ``owner`` holds the execution.

        ``retry_after`` (seconds, without ``requeue``) keeps a running execution from every claim until
        then, with no owner and no crash counted: how a worker sets aside an execution its code cannot
        replay (a changed workflow), for a worker with the right code, without claiming it in a loop."""

    def next_lease_expiry(
        self,
        workflows: Sequence[str],
        *,
        versions: Mapping[str, str] | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        """The earliest time (Unix seconds) a lease on a running execution of ``workflows`` expires, a
        paused one's deadline passes or a delayed queued one may start, or None: an idle worker waits until
        then to take the work over.
        A running execution with no lease counts as expiring now. ``versions`` as in
        :meth:`claim_next_execution`: another version's executions are not this worker's to wait for, nor
        are those on other ``queues`` (None: any queue)."""

    def pin_version(self, execution_id: str, version: str) -> str:
        """Set the execution's version to ``version`` unless it has one, in one statement; return the version
        it has now (``version``, or the one another process pinned first). See :mod:`taskloom.versioning`."""

    def wait_for_work(self, timeout: float) -> bool:
        """Block until work may have been queued (an execution created or put back as ``queued``) or
        ``timeout`` seconds passed; True means "claim now", False only that the time is up.

        PostgreSQL wakes within milliseconds of another process's commit (LISTEN/NOTIFY); SQLite only on
        work queued through this store object, so its callers poll with ``timeout``. A True may be
        spurious (the first call, a reconnect, work another worker took): callers claim and wait again.
        Meant for one waiting thread per store, such as a worker's claim loop. While PostgreSQL is down it
        returns False after a short pause instead of raising: the caller's next store call meets the
        outage, waits it out within the retry budget, or reports it.
        """

    # -- messages (taskloom.send, receive) ----------------------------------------------------------
    def send_message(
        self,
        execution_id: str,
        topic: str,
        value: bytes | None,
        *,
        wake_pause: str,
        idempotency_key: str | None = None,
    ) -> int:
        """Keep a message of ``topic`` for the execution, durably; returns its seq (messages of a topic are
        received in seq order).

        A message whose ``idempotency_key`` the execution already has is not kept again: the seq of the one
        it has is returned, whatever the execution's status is now (the same send, retried, answers the same).

        An unknown id raises :class:`~taskloom.errors.ExecutionNotFoundError`, a finished execution
        :class:`~taskloom.errors.ExecutionStateError`; neither writes anything. When the execution is paused
        at the pause named ``wake_pause`` (its ``receive`` of this topic waits), it is made due at once
        (``wake_at`` now) and waiting workers are woken, as for queued work. The execution's row is locked
        first, as a pause's write locks it (see ``wake_on_message`` of :meth:`append_events`).
        """

    def receive_message(
        self, execution_id: str, topic: str, step_id: str, receipt: ReceiptEvents, *, lease_owner: str | None
    ) -> tuple[int, bytes | None] | None:
        """Take the oldest unread message of ``topic`` for the receive step ``step_id``: in one transaction,
        mark it received by that step and append ``receipt(seq, value)``, the events recording the step's
        outcome. Returns ``(seq, value)``, or None, writing nothing, when no message is unread.

        Fenced like :meth:`append_events` with ``expected_status="running"`` and ``lease_owner``: a run that
        lost its execution (cancelled, or taken over) takes nothing. A step takes at most one message.
        """

    def list_messages(self, execution_id: str) -> list[MessageRecord]:
        """The execution's messages, read and unread, in seq order."""

    def put_secret(self, name: str, ciphertext: bytes) -> None: ...

    def get_secret(self, name: str) -> bytes | None: ...

    def list_secret_names(self) -> list[str]: ...

    def delete_secret(self, name: str) -> bool: ...

    # -- the task cache (cache=True) ----------------------------------------------------------------
    def get_cached_result(self, task: str, key: str, now: float) -> bytes | None:
        """The encoded result cached for ``task`` under argument hash ``key``, or None when there is none
        or it expired (``expires_at`` at or before ``now``; the caller's clock, so that one clock decides)."""

    def put_cached_result(self, task: str, key: str, value: bytes, expires_at: float | None) -> None:
        """Cache ``value`` for ``task`` and ``key`` until ``expires_at`` (None: until cleared), replacing any
        row already there (two processes that missed together both write; the last one stays). Durable
        when it returns."""

    def clear_cached_results(self, task: str | None = None, *, expired_at: float | None = None) -> int:
        """Delete the cached results of ``task`` (of every task when None) and return how many were deleted.

        With ``expired_at``, only rows that had expired by then go: how ``taskloom cache clear --expired``
        reclaims space without dropping results still in use."""

    # -- schedules (taskloom.schedules) -------------------------------------------------------------
    def upsert_schedule(
        self,
        name: str,
        workflow: str,
        target: str | None,
        cron: str,
        timezone: str,
        input: bytes | None,
        catchup: str,
        *,
        now: float,
    ) -> ScheduleRecord | None:
        """Create the schedule ``name`` (not paused, ``last_tick = now``: its first tick is the first one
        after ``now``) or change its cron, time zone, input, catch-up and target, keeping its last tick,
        its paused flag and its creation time. In one statement, so two workers registering the same
        schedule at once both succeed. None, and nothing written, when ``name`` is a schedule of another
        workflow: the caller names the conflict."""

    def get_schedule(self, name: str) -> ScheduleRecord | None: ...

    def list_schedules(self, workflows: Sequence[str] | None = None) -> list[ScheduleRecord]:
        """The schedules (of ``workflows`` when given), by name."""

    def advance_schedule(self, name: str, expected_tick: float, new_tick: float) -> bool:
        """Compare-and-set of ``last_tick``: set it to ``new_tick`` only if it is still ``expected_tick``.

        False when another process moved it first (or the schedule is gone): that one handled the ticks.
        """

    def set_schedule_paused(self, name: str, paused: bool, *, now: float) -> ScheduleRecord | None:
        """Pause or resume ``name``; None if there is no such schedule. Resuming moves ``last_tick`` up to
        ``now`` (if behind): ticks that fell while it was paused are skipped, not caught up."""

    def delete_schedule(self, name: str) -> bool:
        """Remove ``name``; False if there was none. The executions it started stay."""

    # -- queues --------------------------------------------------------------------------------------
    def upsert_queue(self, queue: QueueRecord) -> None:
        """Create or change the queue ``queue.name`` with ``queue``'s limits (its counts are ignored)."""

    def list_queues(self) -> list[QueueRecord]:
        """Every declared queue and every queue with unfinished executions, by name, with how many of its
        executions are queued and running now."""

    # -- workflow deadlines (taskloom.deadlines) -----------------------------------------------------
    def fix_deadline(self, execution_id: str, timeout: float) -> float | None:
        """Fix the execution's deadline at ``created_at + timeout`` unless it has one already, and return
        the deadline it has (None: no such execution). A later call, from another process or with
        another timeout, never moves it."""

    def expire_executions(self, timeouts: Mapping[str, float], now: float, failure: DeadlineFailure) -> Expired:
        """A worker's sweep, in one transaction. For each workflow in ``timeouts`` (name: seconds), fix the
        deadline of its unfinished executions that have none (as :meth:`fix_deadline`); then fail every
        one whose deadline is at or before ``now`` and that nobody runs: queued, paused, or running under
        no lease or an expired one. Failing sets status ``failed``, ``failure(...)``'s output, no lease
        and no ``wake_at``, and appends its event. An execution a live owner holds is never touched: its
        driver enforces the deadline itself."""

    def close(self) -> None: ...


def id_prefix_range(prefix: str) -> tuple[str, str | None]:
    """``(low, high)`` such that ``low <= id < high`` holds exactly for the ids starting with ``prefix``.

    A range rather than ``LIKE``, so that it uses the primary key's index in both dialects and needs no
    escaping of ``%`` and ``_``: ``high`` is ``prefix`` with its last character moved one code point on
    (ids compare by code point: ``COLLATE "C"`` on PostgreSQL); None when no string is above them all.
    """
    stem = prefix.rstrip(chr(0x10FFFF))
    if not stem:
        return prefix, None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # surrogates are no text: the next character is U+E000
        following = 0xE000
    return prefix, stem[:-1] + chr(following)


def listing_where(
    *,
    workflow: str | None,
    status: str | None,
    after: tuple[float, str] | None,
    id_prefix: str | None,
    mark: str,
    id_column: str = "id",
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause of ``list_executions`` and its parameters; ``mark`` is the dialect's placeholder.

    The keyset condition reads ``created_at <= t AND (created_at < t OR id > last_id)`` rather than an
    ``OR`` at the top, so that both dialects search the ``created_at`` index from ``t`` down.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if workflow is not None:
        clauses.append(f"workflow = {mark}")
        params.append(workflow)
    if status is not None:
        clauses.append(f"status = {mark}")
        params.append(status)
    if after is not None:
        created_at, last_id = after
        clauses.append(f"created_at <= {mark} AND (created_at < {mark} OR {id_column} > {mark})")
        params += [float(created_at), float(created_at), last_id]
    if id_prefix:
        low, high = id_prefix_range(id_prefix)
        clauses.append(f"{id_column} >= {mark}")
        params.append(low)
        if high is not None:
            clauses.append(f"{id_column} < {mark}")
            params.append(high)
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def finished_error(execution_id: str, status: str) -> ExecutionStateError:
    """What :meth:`Store.send_message` raises for an execution that has finished: nothing will read it."""
    return ExecutionStateError(
        f"execution {execution_id} is {status}: messages can only be sent to an execution that has not "
        "finished; nothing was sent"
    )


def check_limit(limit: int) -> None:
    """``list_executions``'s ``limit`` must be a whole number of at least 1 (a configuration error else)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise TaskloomError(f"list_executions: limit must be a whole number of at least 1, got {limit!r}")


def held_by_another(record: ExecutionRecord, owner: str, now: float) -> bool:
    """Whether someone other than ``owner`` runs ``record`` under a lease that has not expired."""
    return (
        record.status == ExecutionStatus.RUNNING
        and record.lease_owner is not None
        and record.lease_owner != owner
        and record.lease_expires_at is not None
        and record.lease_expires_at >= now
    )


def not_yet_due(record: ExecutionRecord, now: float) -> bool:
    """Whether ``record`` is queued with a not-before time still ahead (``wf.start(delay=...)``): nobody
    may take it before then."""
    return record.status == ExecutionStatus.QUEUED and record.wake_at is not None and record.wake_at > now


def holder_died(record: ExecutionRecord, new_owner: str | None = None) -> bool:
    """Whether taking ``record`` over means its holder died: it was running, leased to another owner.

    Callers only take a running execution whose lease expired (or has none), so a named holder that is
    not the new owner stopped renewing without releasing it.
    """
    return (
        record.status == ExecutionStatus.RUNNING and record.lease_owner is not None and record.lease_owner != new_owner
    )


def version_filter(versions: Mapping[str, str] | None, mark: str) -> tuple[str, list[Any]]:
    """The claim's ``AND ...`` condition on the executions' version, and its parameters (``mark`` is the
    dialect's placeholder): not pinned yet, or pinned to the version its workflow has in ``versions``."""
    if versions is None:
        return "", []
    if not versions:
        return " AND version IS NULL", []
    pairs = ", ".join(f"({mark}, {mark})" for _ in versions)
    params = [value for pair in sorted(versions.items()) for value in pair]
    return f" AND (version IS NULL OR (workflow, version) IN (VALUES {pairs}))", params


def started_parent(started_data: Mapping[str, Any] | None) -> str | None:
    """The parent of an execution being created, from its ``started_data`` (see :meth:`Store.create_execution`)."""
    parent = started_data.get("parent_id") if started_data else None
    return parent if isinstance(parent, str) else None


def event_data_json(data: Mapping[str, Any] | None) -> str | None:
    """An event's ``data`` as the stores keep it: compact JSON, or NULL when empty."""
    if not data:  # most events: a step's start and outcome have none
        return None
    import json  # here, not at the top: ``import taskloom`` should not load it (tests/perf/test_import.py)

    return json.dumps(dict(data), separators=(",", ":"))


#: The columns :func:`decode_events` reads from ``events``, in its order.
EVENT_COLUMNS = "seq, type, ts, step_id, name, value, data, start_value"
_STARTED = EventType.STEP_STARTED.value


def merge_steps(events: Sequence[NewEvent]) -> list[tuple[NewEvent, bytes | None]]:
    """``events`` as the rows the stores write: ``(event, start_value)``, one per row.

    A durable step is written as its STEP_STARTED and its outcome together; stored as two rows, its
    write costs two index entries and two row inserts, the largest part of a step's time above the
    database's floor. So a STEP_STARTED immediately followed by its own outcome (same step and name),
    whose ``data`` is empty, is kept as ONE row: the outcome's, with the start's value in
    ``start_value`` (``b""`` when the start had none; a serde blob is never empty). ``start_value`` is
    None for every other row. :func:`decode_events` expands such a row back into both events, so
    nothing above the store sees a difference; both share the row's seq (see ``load_events``).
    """
    rows: list[tuple[NewEvent, bytes | None]] = []
    i, count = 0, len(events)
    while i < count:
        event = events[i]
        if i + 1 < count and fits_one_row(event, events[i + 1]):
            rows.append((events[i + 1], b"" if event.value is None else event.value))
            i += 2
        else:
            rows.append((event, None))
            i += 1
    return rows


def fits_one_row(started: NewEvent, outcome: NewEvent) -> bool:
    """Whether ``started`` and ``outcome`` are one step's start and outcome that fit one row."""
    return (
        started.type is EventType.STEP_STARTED
        and outcome.type in STEP_OUTCOMES
        and not started.data
        and started.value != b""  # stored as b"" it would read back as None
        and outcome.step_id == started.step_id
        and outcome.name == started.name
    )


def decode_events(where: str, execution_id: str, rows: Iterable[tuple[Any, ...]]) -> list[Event]:
    """Rows ``(seq, type, ts, step_id, name, value, data[, start_value])`` (:data:`EVENT_COLUMNS`) as
    events; a row holding a step's start too (:func:`merge_steps`) is its two events, the start first,
    both with the row's seq and time. A row this taskloom cannot read is a StoreError that names the
    store (``where``) as well as the execution and the event."""
    events: list[Event] = []
    try:
        for row in rows:
            start_value = row[7] if len(row) > 7 else None
            if start_value is not None:
                seq, _, ts, step_id, name = row[:5]
                value = bytes(start_value) or None
                events.append(Event.from_row(execution_id, (seq, _STARTED, ts, step_id, name, value, None)))
            events.append(Event.from_row(execution_id, row[:7]))
    except StoreError as error:
        raise StoreError(f"{where}: {error}") from None
    return events
