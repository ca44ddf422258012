"""The instance queue: task instances that the remote backend queues and workers claim and run.

Every query about remote task instances lives here, one transaction per method, for SQLite and
PostgreSQL alike. The implementations borrow the store's connections (:meth:`SQLiteStore._conn`,
:meth:`PostgresStore._transaction`) and its schema (migration ``002_instances.sql``).

Values are JSON text, never pickles: arguments come from HTTP request bodies, and results and errors go
back to clients as JSON. Callers pass them already encoded.

How the rules hold:

- **max_parallel across workers.** A claim counts the running instances of each (session, task) among its
  candidates and admits only as many as their limit leaves. On PostgreSQL the count is taken under a
  transaction-scoped advisory lock per (session, task), taken in sorted order, so two workers claiming at
  once cannot both see the same free slot; SQLite's ``BEGIN IMMEDIATE`` serialises claims by itself.
- **Updates in commit order.** Each session numbers its updates (``instance_sessions.last_seq``) while its
  row is locked, so a reader that has seen seq N never later finds a newly committed update below N.
- **Dead workers.** A running instance whose lease expired is put back in the queue by the next claim
  (any worker's), with a warning log update, and runs again: instances are not durable steps.
- **Served targets.** Each worker registers the targets it serves (migration ``004_instance_workers.sql``)
  at start and with every heartbeat, and removes them when it stops; :meth:`InstanceQueue.served_targets`
  tells the server which targets a worker was seen serving lately. Times are the writer's clock, as for
  leases here; a freshness window of tens of seconds absorbs ordinary clock skew.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import sqlite3

    from taskloom.store.base import Store
    from taskloom.store.postgres import Connection, PostgresStore
    from taskloom.store.sqlite import SQLiteStore

#: PostgreSQL channel notified when instances are queued (or put back), so idle workers wake at once
INSTANCE_CHANNEL = "taskloom_instances"
#: how often a running instance worker registers its targets again (its heartbeat)
WORKER_HEARTBEAT_SECONDS = 5.0
#: a target counts as served while a worker registered it within this many seconds (several heartbeats,
#: so a worker busy for a moment or a store hiccup does not make its targets look unserved)
WORKER_SEEN_SECONDS = 30.0


class InstanceStatus:
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})
    ALL = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED)


@dataclass(frozen=True, slots=True)
class NewInstance:
    """An instance to queue. ``arguments`` is JSON text: ``{"args": [...], "kwargs": {...}}``."""

    instance_id: str
    session_id: str
    session_name: str
    task: str
    target: str
    max_parallel: int
    arguments: str


@dataclass(frozen=True, slots=True)
class ClaimedInstance:
    """An instance a worker now holds under a lease; ``attempt`` counts claims (2+: it ran before)."""

    instance_id: str
    session_id: str
    task: str
    target: str
    arguments: str
    attempt: int
    stop_requested: bool


@dataclass(frozen=True, slots=True)
class Report:
    """One update a running instance sends its client: ``kind`` is progress, status or log; ``data`` JSON."""

    session_id: str
    instance_id: str
    kind: str
    data: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an instance ended on its worker: ``completed`` (``data`` holds ``result``) or ``failed``
    (``data`` holds ``error``). ``result``/``error`` are the JSON kept on the instance's row."""

    session_id: str
    instance_id: str
    status: str
    result: str | None
    error: str | None
    data: str


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One row of the instances table; ``arguments``, ``result`` and ``error`` are JSON text."""

    id: str
    session_id: str
    task: str
    target: str
    max_parallel: int
    arguments: str
    status: str
    stop_requested: bool
    result: str | None
    error: str | None
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class InstanceUpdate:
    """One entry of a session's update stream; ``data`` is JSON text (an object)."""

    seq: int
    instance_id: str
    kind: str
    data: str


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One client Session as the dashboard lists it: how many instances it queued, how many are unfinished."""

    id: str
    name: str
    created_at: float
    instances: int
    unfinished: int


#: the newest sessions first, each with its counts (read through the ``instances_by_session`` index)
_SESSIONS = (
    "SELECT s.id, s.name, s.created_at, "
    "(SELECT count(*) FROM instances AS i WHERE i.session_id = s.id), "
    "(SELECT count(*) FROM instances AS i WHERE i.session_id = s.id AND i.status IN ('queued', 'running')) "
    "FROM instance_sessions AS s ORDER BY s.created_at DESC, s.id {collate} LIMIT {mark}"
)


class InstanceQueue(Protocol):
    """The instance queue of one store. Every method is one transaction."""

    def add_instances(self, instances: Sequence[NewInstance]) -> int:
        """Queue ``instances`` (creating their sessions); returns how many were new.

        An id that exists already is left as it is, so a client may safely repeat a request whose answer
        it did not get.
        """

    def claim_instances(
        self, worker_id: str, targets: Sequence[str], limit: int, lease_seconds: float
    ) -> list[ClaimedInstance]:
        """Take up to ``limit`` queued instances of ``targets``, oldest first, within each (session, task)'s
        ``max_parallel``; they become ``running`` under ``worker_id``'s lease, each with a ``running`` update.

        First puts back in the queue every running instance whose lease has expired."""

    def record(self, worker_id: str, reports: Sequence[Report], outcomes: Sequence[Outcome]) -> set[str]:
        """Append ``reports`` and settle ``outcomes``, in that order; returns the ids whose outcome was
        recorded. An outcome counts only while ``worker_id`` still holds the instance (not if its lease
        expired and the instance went back to the queue). A cancelled instance ends ``cancelled``."""

    def renew_leases(self, worker_id: str, lease_seconds: float) -> list[str]:
        """Extend ``worker_id``'s leases; returns the ids of the instances it still holds."""

    def stop_requests(self, worker_id: str) -> list[str]:
        """The ids of instances ``worker_id`` holds whose stop (or cancel) was requested."""

    def release_instances(self, worker_id: str, instance_ids: Sequence[str]) -> None:
        """Put instances ``worker_id`` holds but will not finish back in the queue (graceful shutdown)."""

    def request_stop(self, instance_id: str, *, cancel: bool) -> str | None:
        """Ask an instance to stop; returns its status afterwards, or None if there is no such instance.

        A queued instance that is cancelled is ``cancelled`` at once and never runs. Otherwise the stop flag
        is set for its worker (and, with ``cancel``, it ends ``cancelled`` whatever it returns). A finished
        instance is left as it is."""

    def get_instance(self, instance_id: str) -> InstanceRecord | None: ...

    def list_sessions(self, limit: int) -> list[SessionSummary]:
        """The ``limit`` newest sessions (by when their first instance was queued), newest first."""

    def register_worker(self, worker_id: str, targets: Sequence[str]) -> None:
        """Record that ``worker_id`` serves ``targets`` now (its start and every heartbeat)."""

    def unregister_worker(self, worker_id: str) -> None:
        """Forget ``worker_id``'s targets (it stops, so nothing it served should be queued for it)."""

    def served_targets(self, targets: Sequence[str], within_seconds: float) -> set[str]:
        """Those of ``targets`` that some worker registered within the last ``within_seconds``."""

    def seen_workers(self, within_seconds: float) -> list[tuple[str, str, float]]:
        """``(worker_id, target, last_seen)`` of every registration within the last ``within_seconds``,
        by worker then target: the live workers and what each serves (``taskloom workers``)."""

    def load_updates(self, session_id: str, after: int, limit: int) -> tuple[bool, list[InstanceUpdate]]:
        """The session's updates with seq > ``after`` (at most ``limit``), and whether more may come: False
        only when every instance of the session had finished before the updates were read."""

    def wait_for_instances(self, timeout: float) -> bool:
        """Block until instances may have been queued, or ``timeout`` passes; True means "claim now".

        PostgreSQL wakes on another process's commit (LISTEN/NOTIFY); SQLite only on work queued through
        this object, so its callers poll. For one waiting thread (a worker's claim loop)."""

    def close(self) -> None: ...


# -- shared helpers -------------------------------------------------------------------------------------
_RECORD_COLUMNS = (
    "id, session_id, task, target, max_parallel, arguments, status, stop_requested, result, error, attempts, "
    "created_at, started_at, finished_at"
)
# Candidates for a claim skip the (session, task) groups already at their limit, so a full group at the head
# of the queue does not hide the instances of other groups behind it. Running instances are few (at most
# the workers' slots), so counting them per claim is cheap; the count that decides is taken again under
# the groups' locks.
_RUNNING_GROUPS = (
    "running_groups AS (SELECT session_id, task, COUNT(*) AS running FROM instances WHERE status = 'running' "
    "GROUP BY session_id, task)"
)
_NOT_FULL = (
    "NOT EXISTS (SELECT 1 FROM running_groups AS g WHERE g.session_id = i.session_id AND g.task = i.task "
    "AND g.running >= i.max_parallel)"
)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def _requeued_log(previous_attempts: int) -> str:
    message = "its worker stopped renewing its lease (the worker died or hung); the instance runs again"
    return _json({"level": "warning", "message": message, "extra": {"attempt": previous_attempts}})


def _running_data(worker_id: str, attempt: int) -> str:
    return _json({"worker": worker_id, "attempt": attempt})


def _admit(rows: Sequence[tuple[Any, ...]], running: Counter[tuple[str, str]], limit: int) -> list[tuple[Any, ...]]:
    """The candidate rows ``(id, session_id, task, ..., max_parallel, ...)`` that fit their group's limit.

    ``rows[i][1:3]`` is the group, ``rows[i][4]`` its ``max_parallel``; ``running`` counts what already runs.
    """
    admitted = []
    for row in rows:
        group = (row[1], row[2])
        if running[group] < row[4]:
            running[group] += 1
            admitted.append(row)
            if len(admitted) >= limit:
                break
    return admitted


def _record(row: Sequence[Any]) -> InstanceRecord:
    return InstanceRecord(
        id=row[0],
        session_id=row[1],
        task=row[2],
        target=row[3],
        max_parallel=int(row[4]),
        arguments=row[5],
        status=row[6],
        stop_requested=bool(row[7]),
        result=row[8],
        error=row[9],
        attempts=int(row[10]),
        created_at=float(row[11]),
        started_at=None if row[12] is None else float(row[12]),
        finished_at=None if row[13] is None else float(row[13]),
    )


# -- SQLite ---------------------------------------------------------------------------------------------
class SQLiteInstanceQueue:
    """The instance queue in a SQLite store: every write is one ``BEGIN IMMEDIATE`` transaction."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._queued = threading.Event()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """The store's write transaction, whose rollback never hides the error that caused it (a ROLLBACK
        after a failed COMMIT on a full disk would raise "no transaction is active" instead)."""
        return self._store._write()

    @staticmethod
    def _append(conn: sqlite3.Connection, updates: Sequence[tuple[str, str, str, str]], now: float) -> None:
        """Append ``(session_id, instance_id, kind, data)`` updates, numbering them per session."""
        if not updates:
            return
        counts = Counter(update[0] for update in updates)
        next_seq: dict[str, int] = {}
        for session_id, count in counts.items():
            row = conn.execute(
                "UPDATE instance_sessions SET last_seq = last_seq + ? WHERE id = ? RETURNING last_seq",
                (count, session_id),
            ).fetchone()
            next_seq[session_id] = int(row[0]) - count + 1
        rows = []
        for session_id, instance_id, kind, data in updates:
            rows.append((session_id, next_seq[session_id], instance_id, kind, data, now))
            next_seq[session_id] += 1
        conn.executemany(
            "INSERT INTO instance_updates (session_id, seq, instance_id, kind, data, ts) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )

    def add_instances(self, instances: Sequence[NewInstance]) -> int:
        if not instances:
            return 0
        now = time.time()
        sessions = {(i.session_id, i.session_name) for i in instances}
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO instance_sessions (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                [(session_id, name, now) for session_id, name in sorted(sessions)],
            )
            before = conn.total_changes
            conn.executemany(
                "INSERT INTO instances (id, session_id, task, target, max_parallel, arguments, status, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?) ON CONFLICT (id) DO NOTHING",
                [(i.instance_id, i.session_id, i.task, i.target, i.max_parallel, i.arguments, now) for i in instances],
            )
            inserted = conn.total_changes - before
        if inserted:
            self._queued.set()
        return inserted

    def _requeue_expired(self, conn: sqlite3.Connection, now: float) -> None:
        expired = conn.execute(
            "UPDATE instances SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL "
            "WHERE status = 'running' AND lease_expires_at < ? RETURNING session_id, id, attempts",
            (now,),
        ).fetchall()
        self._append(conn, [(s, i, "log", _requeued_log(a)) for s, i, a in expired], now)

    def claim_instances(
        self, worker_id: str, targets: Sequence[str], limit: int, lease_seconds: float
    ) -> list[ClaimedInstance]:
        if not targets or limit <= 0:
            return []
        now = time.time()
        marks = ", ".join("?" for _ in targets)
        with self._write() as conn:
            self._requeue_expired(conn, now)
            rows = conn.execute(
                f"WITH {_RUNNING_GROUPS} SELECT id, session_id, task, target, max_parallel, arguments, stop_requested, "
                f"attempts FROM instances AS i WHERE status = 'queued' AND target IN ({marks}) AND {_NOT_FULL} "
                "ORDER BY rowid LIMIT ?",
                (*targets, limit),
            ).fetchall()
            if not rows:
                return []
            sessions = sorted({row[1] for row in rows})
            running: Counter[tuple[str, str]] = Counter()
            for session_id, task, count in conn.execute(
                "SELECT session_id, task, COUNT(*) FROM instances WHERE status = 'running' AND session_id IN "
                f"({', '.join('?' for _ in sessions)}) GROUP BY session_id, task",
                sessions,
            ):
                running[(session_id, task)] = int(count)
            admitted = _admit(rows, running, limit)
            conn.executemany(
                "UPDATE instances SET status = 'running', lease_owner = ?, lease_expires_at = ?, started_at = ?, "
                "attempts = attempts + 1 WHERE id = ?",
                [(worker_id, now + lease_seconds, now, row[0]) for row in admitted],
            )
            self._append(conn, [(r[1], r[0], "running", _running_data(worker_id, r[7] + 1)) for r in admitted], now)
        return [ClaimedInstance(r[0], r[1], r[2], r[3], r[5], r[7] + 1, bool(r[6])) for r in admitted]

    def record(self, worker_id: str, reports: Sequence[Report], outcomes: Sequence[Outcome]) -> set[str]:
        if not reports and not outcomes:
            return set()
        now = time.time()
        accepted: set[str] = set()
        with self._write() as conn:
            updates = [(r.session_id, r.instance_id, r.kind, r.data) for r in reports]
            for outcome in outcomes:
                row = conn.execute(
                    "UPDATE instances SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE ? END, "
                    "result = ?, error = ?, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL "
                    "WHERE id = ? AND lease_owner = ? AND status = 'running' RETURNING status",
                    (outcome.status, outcome.result, outcome.error, now, outcome.instance_id, worker_id),
                ).fetchone()
                if row is not None:
                    accepted.add(outcome.instance_id)
                    updates.append((outcome.session_id, outcome.instance_id, row[0], outcome.data))
            self._append(conn, updates, now)
        if accepted:  # slots freed: an instance held back by its max_parallel may run now
            self._queued.set()
        return accepted

    def renew_leases(self, worker_id: str, lease_seconds: float) -> list[str]:
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE instances SET lease_expires_at = ? WHERE lease_owner = ? AND status = 'running' RETURNING id",
                (time.time() + lease_seconds, worker_id),
            ).fetchall()
        return sorted(instance_id for (instance_id,) in rows)

    def stop_requests(self, worker_id: str) -> list[str]:
        rows = (
            self._store._conn()
            .execute(
                "SELECT id FROM instances WHERE lease_owner = ? AND status = 'running' AND stop_requested",
                (worker_id,),
            )
            .fetchall()
        )
        return [instance_id for (instance_id,) in rows]

    def release_instances(self, worker_id: str, instance_ids: Sequence[str]) -> None:
        if not instance_ids:
            return
        with self._write() as conn:
            conn.executemany(
                "UPDATE instances SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL "
                "WHERE id = ? AND lease_owner = ? AND status = 'running'",
                [(instance_id, worker_id) for instance_id in instance_ids],
            )
        self._queued.set()

    def request_stop(self, instance_id: str, *, cancel: bool) -> str | None:
        now = time.time()
        with self._write() as conn:
            row = conn.execute("SELECT session_id, status FROM instances WHERE id = ?", (instance_id,)).fetchone()
            if row is None:
                return None
            session_id, status = row
            if status in InstanceStatus.FINISHED:
                return str(status)
            if cancel and status == InstanceStatus.QUEUED:
                conn.execute(
                    "UPDATE instances SET status = 'cancelled', stop_requested = 1, cancel_requested = 1, "
                    "finished_at = ? WHERE id = ?",
                    (now, instance_id),
                )
                self._append(conn, [(session_id, instance_id, InstanceStatus.CANCELLED, "{}")], now)
                return InstanceStatus.CANCELLED
            conn.execute(
                "UPDATE instances SET stop_requested = 1, cancel_requested = cancel_requested OR ? WHERE id = ?",
                (1 if cancel else 0, instance_id),
            )
            return str(status)

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        row = (
            self._store._conn()
            .execute(f"SELECT {_RECORD_COLUMNS} FROM instances WHERE id = ?", (instance_id,))
            .fetchone()
        )
        return _record(row) if row else None

    def list_sessions(self, limit: int) -> list[SessionSummary]:
        rows = self._store._conn().execute(_SESSIONS.format(collate="", mark="?"), (int(limit),)).fetchall()
        return [SessionSummary(*row) for row in rows]

    def register_worker(self, worker_id: str, targets: Sequence[str]) -> None:
        now = time.time()
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO instance_workers (worker_id, target, last_seen) VALUES (?, ?, ?) "
                "ON CONFLICT (target, worker_id) DO UPDATE SET last_seen = excluded.last_seen",
                [(worker_id, target, now) for target in sorted(set(targets))],
            )

    def unregister_worker(self, worker_id: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM instance_workers WHERE worker_id = ?", (worker_id,))

    def served_targets(self, targets: Sequence[str], within_seconds: float) -> set[str]:
        wanted = sorted(set(targets))
        if not wanted:
            return set()
        marks = ", ".join("?" * len(wanted))
        rows = (
            self._store._conn()
            .execute(
                f"SELECT DISTINCT target FROM instance_workers WHERE target IN ({marks}) AND last_seen >= ?",
                (*wanted, time.time() - within_seconds),
            )
            .fetchall()
        )
        return {target for (target,) in rows}

    def seen_workers(self, within_seconds: float) -> list[tuple[str, str, float]]:
        rows = (
            self._store._conn()
            .execute(
                "SELECT worker_id, target, last_seen FROM instance_workers WHERE last_seen >= ? "
                "ORDER BY worker_id, target",
                (time.time() - within_seconds,),
            )
            .fetchall()
        )
        return [(worker, target, float(seen)) for worker, target, seen in rows]

    def load_updates(self, session_id: str, after: int, limit: int) -> tuple[bool, list[InstanceUpdate]]:
        conn = self._store._conn()
        # One read transaction: the unfinished check and the updates see the same snapshot.
        conn.execute("BEGIN")
        try:
            unfinished = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM instances WHERE session_id = ? AND status IN ('queued', 'running'))",
                (session_id,),
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT seq, instance_id, kind, data FROM instance_updates WHERE session_id = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (session_id, after, limit),
            ).fetchall()
        finally:
            conn.execute("COMMIT")
        return bool(unfinished) or len(rows) >= limit, [InstanceUpdate(*row) for row in rows]

    def wait_for_instances(self, timeout: float) -> bool:
        woke = self._queued.wait(timeout)
        self._queued.clear()
        return woke

    def close(self) -> None:
        self._queued.set()


# -- PostgreSQL -----------------------------------------------------------------------------------------
def _group_lock_key(session_id: str, task: str) -> int:
    """A signed 64-bit advisory-lock key for one (session, task)."""
    digest = hashlib.blake2b(f"{session_id}\x00{task}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresInstanceQueue:
    """The instance queue in a PostgreSQL store: ``FOR UPDATE SKIP LOCKED`` claims, LISTEN/NOTIFY wake-ups."""

    def __init__(self, store: PostgresStore) -> None:
        from taskloom.store.postgres import ChannelListener

        self._store = store
        self._listener = ChannelListener(store._connect_autocommit, INSTANCE_CHANNEL)

    @staticmethod
    def _append(conn: Connection, updates: Sequence[tuple[str, str, str, str]], now: float) -> None:
        """Append ``(session_id, instance_id, kind, data)`` updates, numbering them per session under the
        session rows' locks (taken in sorted order, so two writers never wait on each other in a cycle)."""
        if not updates:
            return
        counts = Counter(update[0] for update in updates)
        sessions = sorted(counts)
        if len(sessions) > 1:
            conn.execute("SELECT id FROM instance_sessions WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (sessions,))
        rows = conn.execute(
            "UPDATE instance_sessions AS s SET last_seq = s.last_seq + u.n "
            "FROM unnest(%s::text[], %s::bigint[]) AS u (id, n) WHERE s.id = u.id RETURNING s.id, s.last_seq",
            (sessions, [counts[s] for s in sessions]),
        ).fetchall()
        next_seq = {session_id: int(last) - counts[session_id] + 1 for session_id, last in rows}
        columns: tuple[list[str], list[int], list[str], list[str], list[str]] = ([], [], [], [], [])
        for session_id, instance_id, kind, data in updates:
            columns[0].append(session_id)
            columns[1].append(next_seq[session_id])
            columns[2].append(instance_id)
            columns[3].append(kind)
            columns[4].append(data)
            next_seq[session_id] += 1
        conn.execute(
            "INSERT INTO instance_updates (session_id, seq, instance_id, kind, data, ts) "
            "SELECT session_id, seq, instance_id, kind, data, %s "
            "FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::text[], %s::text[]) "
            "AS u (session_id, seq, instance_id, kind, data)",
            (now, *columns),
        )

    def add_instances(self, instances: Sequence[NewInstance]) -> int:
        if not instances:
            return 0
        now = time.time()
        sessions = sorted({(i.session_id, i.session_name) for i in instances})
        with self._store._transaction() as conn:
            conn.execute(
                "INSERT INTO instance_sessions (id, name, created_at) "
                "SELECT id, name, %s FROM unnest(%s::text[], %s::text[]) AS s (id, name) ON CONFLICT (id) DO NOTHING",
                (now, [s[0] for s in sessions], [s[1] for s in sessions]),
            )
            inserted = conn.execute(
                "INSERT INTO instances (id, session_id, task, target, max_parallel, arguments, status, created_at) "
                "SELECT id, session_id, task, target, max_parallel, arguments, 'queued', %s "
                "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::text[]) "
                "WITH ORDINALITY AS b (id, session_id, task, target, max_parallel, arguments, position) "
                "ORDER BY position ON CONFLICT (id) DO NOTHING",
                (
                    now,
                    [i.instance_id for i in instances],
                    [i.session_id for i in instances],
                    [i.task for i in instances],
                    [i.target for i in instances],
                    [i.max_parallel for i in instances],
                    [i.arguments for i in instances],
                ),
            ).rowcount
            if inserted:
                conn.execute("SELECT pg_notify(%s, '')", (INSTANCE_CHANNEL,))
        return int(inserted)

    def claim_instances(
        self, worker_id: str, targets: Sequence[str], limit: int, lease_seconds: float
    ) -> list[ClaimedInstance]:
        if not targets or limit <= 0:
            return []
        now = time.time()
        with self._store._transaction() as conn:
            expired = conn.execute(
                "UPDATE instances SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL "
                "WHERE status = 'running' AND lease_expires_at < %s RETURNING session_id, id, attempts",
                (now,),
            ).fetchall()
            self._append(conn, [(s, i, "log", _requeued_log(a)) for s, i, a in expired], now)
            # SKIP LOCKED: workers claiming together take different rows instead of queueing on one lock.
            rows = conn.execute(
                f"WITH {_RUNNING_GROUPS} SELECT id, session_id, task, target, max_parallel, arguments, stop_requested, "
                f"attempts FROM instances AS i WHERE status = 'queued' AND target = ANY(%s) AND {_NOT_FULL} "
                "ORDER BY position LIMIT %s FOR UPDATE OF i SKIP LOCKED",
                (list(targets), limit),
            ).fetchall()
            if not rows:
                return []
            groups = sorted({(row[1], row[2]) for row in rows})
            for key in sorted(_group_lock_key(*group) for group in groups):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            running: Counter[tuple[str, str]] = Counter()
            # A statement after the locks: it sees every claim committed by whoever held them before.
            for session_id, task, count in conn.execute(
                "SELECT session_id, task, COUNT(*) FROM instances WHERE status = 'running' AND session_id = ANY(%s) "
                "GROUP BY session_id, task",
                (sorted({group[0] for group in groups}),),
            ):
                running[(session_id, task)] = int(count)
            admitted = _admit(rows, running, limit)
            if not admitted:
                return []
            conn.execute(
                "UPDATE instances SET status = 'running', lease_owner = %s, lease_expires_at = %s, started_at = %s, "
                "attempts = attempts + 1 WHERE id = ANY(%s)",
                (worker_id, now + lease_seconds, now, [row[0] for row in admitted]),
            )
            self._append(conn, [(r[1], r[0], "running", _running_data(worker_id, r[7] + 1)) for r in admitted], now)
        return [ClaimedInstance(r[0], r[1], r[2], r[3], r[5], r[7] + 1, bool(r[6])) for r in admitted]

    def record(self, worker_id: str, reports: Sequence[Report], outcomes: Sequence[Outcome]) -> set[str]:
        if not reports and not outcomes:
            return set()
        now = time.time()
        updates = [(r.session_id, r.instance_id, r.kind, r.data) for r in reports]
        with self._store._transaction() as conn:
            final: dict[str, str] = {}
            if outcomes:
                rows = conn.execute(
                    "UPDATE instances AS i SET "
                    "status = CASE WHEN i.cancel_requested THEN 'cancelled' ELSE o.status END, "
                    "result = o.result, error = o.error, finished_at = %s, lease_owner = NULL, lease_expires_at = NULL "
                    "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS o (id, status, result, error) "
                    "WHERE i.id = o.id AND i.lease_owner = %s AND i.status = 'running' RETURNING i.id, i.status",
                    (
                        now,
                        [o.instance_id for o in outcomes],
                        [o.status for o in outcomes],
                        [o.result for o in outcomes],
                        [o.error for o in outcomes],
                        worker_id,
                    ),
                ).fetchall()
                final = dict(rows)
            for outcome in outcomes:
                status = final.get(outcome.instance_id)
                if status is not None:
                    updates.append((outcome.session_id, outcome.instance_id, status, outcome.data))
            self._append(conn, updates, now)
            if final:  # slots freed: an instance held back by its max_parallel may run now
                conn.execute("SELECT pg_notify(%s, '')", (INSTANCE_CHANNEL,))
        return set(final)

    def renew_leases(self, worker_id: str, lease_seconds: float) -> list[str]:
        with self._store._transaction() as conn:
            rows = conn.execute(
                "UPDATE instances SET lease_expires_at = %s WHERE lease_owner = %s AND status = 'running' RETURNING id",
                (time.time() + lease_seconds, worker_id),
            ).fetchall()
        return sorted(instance_id for (instance_id,) in rows)

    def stop_requests(self, worker_id: str) -> list[str]:
        with self._store._transaction() as conn:
            rows = conn.execute(
                "SELECT id FROM instances WHERE lease_owner = %s AND status = 'running' AND stop_requested",
                (worker_id,),
            ).fetchall()
        return [instance_id for (instance_id,) in rows]

    def release_instances(self, worker_id: str, instance_ids: Sequence[str]) -> None:
        if not instance_ids:
            return
        with self._store._transaction() as conn:
            released = conn.execute(
                "UPDATE instances SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL "
                "WHERE id = ANY(%s) AND lease_owner = %s AND status = 'running'",
                (list(instance_ids), worker_id),
            ).rowcount
            if released:
                conn.execute("SELECT pg_notify(%s, '')", (INSTANCE_CHANNEL,))

    def request_stop(self, instance_id: str, *, cancel: bool) -> str | None:
        now = time.time()
        with self._store._transaction() as conn:
            row = conn.execute(
                "SELECT session_id, status FROM instances WHERE id = %s FOR UPDATE", (instance_id,)
            ).fetchone()
            if row is None:
                return None
            session_id, status = row
            if status in InstanceStatus.FINISHED:
                return str(status)
            if cancel and status == InstanceStatus.QUEUED:
                conn.execute(
                    "UPDATE instances SET status = 'cancelled', stop_requested = TRUE, cancel_requested = TRUE, "
                    "finished_at = %s WHERE id = %s",
                    (now, instance_id),
                )
                self._append(conn, [(session_id, instance_id, InstanceStatus.CANCELLED, "{}")], now)
                return InstanceStatus.CANCELLED
            conn.execute(
                "UPDATE instances SET stop_requested = TRUE, cancel_requested = cancel_requested OR %s WHERE id = %s",
                (cancel, instance_id),
            )
            return str(status)

    def get_instance(self, instance_id: str) -> InstanceRecord | None:
        with self._store._transaction() as conn:
            row = conn.execute(f"SELECT {_RECORD_COLUMNS} FROM instances WHERE id = %s", (instance_id,)).fetchone()
        return _record(row) if row else None

    def list_sessions(self, limit: int) -> list[SessionSummary]:
        with self._store._transaction() as conn:
            rows = conn.execute(_SESSIONS.format(collate='COLLATE "C"', mark="%s"), (int(limit),)).fetchall()
        return [SessionSummary(*row) for row in rows]

    def register_worker(self, worker_id: str, targets: Sequence[str]) -> None:
        with self._store._transaction() as conn:
            conn.execute(
                "INSERT INTO instance_workers (worker_id, target, last_seen) "
                "SELECT %s, target, %s FROM unnest(%s::text[]) AS t (target) "
                "ON CONFLICT (target, worker_id) DO UPDATE SET last_seen = excluded.last_seen",
                (worker_id, time.time(), sorted(set(targets))),
            )

    def unregister_worker(self, worker_id: str) -> None:
        with self._store._transaction() as conn:
            conn.execute("DELETE FROM instance_workers WHERE worker_id = %s", (worker_id,))

    def served_targets(self, targets: Sequence[str], within_seconds: float) -> set[str]:
        wanted = sorted(set(targets))
        if not wanted:
            return set()
        with self._store._transaction() as conn:
            rows = conn.execute(
                "SELECT DISTINCT target FROM instance_workers WHERE target = ANY(%s) AND last_seen >= %s",
                (wanted, time.time() - within_seconds),
            ).fetchall()
        return {target for (target,) in rows}

    def seen_workers(self, within_seconds: float) -> list[tuple[str, str, float]]:
        with self._store._transaction() as conn:
            rows = conn.execute(
                "SELECT worker_id, target, last_seen FROM instance_workers WHERE last_seen >= %s "
                "ORDER BY worker_id, target",
                (time.time() - within_seconds,),
            ).fetchall()
        return [(worker, target, float(seen)) for worker, target, seen in rows]

    def load_updates(self, session_id: str, after: int, limit: int) -> tuple[bool, list[InstanceUpdate]]:
        with self._store._transaction() as conn:
            # The check comes first: an outcome committed before it is seen by the (later) read of updates.
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM instances WHERE session_id = %s AND status IN ('queued', 'running'))",
                (session_id,),
            ).fetchone()
            rows = conn.execute(
                "SELECT seq, instance_id, kind, data FROM instance_updates WHERE session_id = %s AND seq > %s "
                "ORDER BY seq LIMIT %s",
                (session_id, after, limit),
            ).fetchall()
        unfinished = bool(row and row[0])
        return unfinished or len(rows) >= limit, [InstanceUpdate(int(s), i, k, d) for s, i, k, d in rows]

    def wait_for_instances(self, timeout: float) -> bool:
        return self._listener.wait(timeout)

    def close(self) -> None:
        self._listener.close()


# -- which queue ----------------------------------------------------------------------------------------
_queues: weakref.WeakKeyDictionary[Any, InstanceQueue] = weakref.WeakKeyDictionary()
_queues_lock = threading.Lock()


def instance_queue_for(store: Store) -> InstanceQueue:
    """The instance queue of ``store`` (one per store object, made on first use)."""
    with _queues_lock:
        queue = _queues.get(store)
        if queue is None:
            queue = _queues[store] = _make_queue(store)
        return queue


def _make_queue(store: Store) -> InstanceQueue:
    from taskloom.store.sqlite import SQLiteStore
    from taskloom.store.statements import is_postgres

    if isinstance(store, SQLiteStore):
        return SQLiteInstanceQueue(store)
    if is_postgres(store):
        from taskloom.store.postgres import PostgresStore

        if isinstance(store, PostgresStore):
            return PostgresInstanceQueue(store)
    raise TypeError(f"no instance queue for a store of type {type(store).__qualname__}")
