"""The shared store: PostgreSQL through psycopg 3, for several processes and machines.

Every protocol method is one transaction on a connection borrowed from a pool (psycopg_pool's, whose
connections this store opens itself: see :class:`_StoreOpened`), so any number of threads can share a
store and short-lived threads do not each leave a server connection behind. A write of several
statements runs between ``BEGIN`` and ``COMMIT``; a read is one statement in autocommit (one round trip),
and so is the common write of ``append_events``, a step's events under the run's lease (see
:func:`_append_sql`).

Appending to an execution first locks its row, so one execution's events take their seqs in commit
order: a reader following ``load_events(after_seq=...)`` never misses an event that commits later with
a smaller seq.

Queuing work (an execution created or put back as ``queued``) sends a NOTIFY on :data:`WORK_CHANNEL` in
the same transaction, so a worker blocked in :meth:`PostgresStore.wait_for_work` (a connection of its own
that LISTENs) wakes as soon as the work is committed, and never before.

A forked child never uses or closes its parent's connections (closing one would end the parent's
session on the server); it notices the new process id and opens its own.

Faults (:mod:`taskloom.store.faults`): a lost connection, a server restarting or shutting down, a
serialization failure or a deadlock is retried within the store's retry budget, on a new connection
(the pool is renewed, since a restart kills every connection in it), then raised as
StoreUnavailableError; the LISTEN connection of :meth:`PostgresStore.wait_for_work` reconnects the same
way. A full disk, a read-only server or anything unexpected is a StoreError naming the redacted URL.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from taskloom.errors import ExecutionNotFoundError, ExecutionStateError, LeaseLostError, StoreError
from taskloom.events import Event, EventType, NewEvent
from taskloom.store.base import (
    DEFAULT_QUEUE,
    EVENT_COLUMNS,
    FIX_DEADLINE,
    LIST_QUEUES,
    QUEUE_COLUMNS,
    SCHEDULE_COLUMNS,
    SENT_WITH_KEY,
    UPSERT_QUEUE,
    Acquired,
    DeadlineFailure,
    ExecutionRecord,
    ExecutionStatus,
    ReceiptEvents,
    check_limit,
    decode_events,
    event_data_json,
    expire_in_transaction,
    finished_error,
    held_by_another,
    holder_died,
    listing_where,
    merge_steps,
    not_yet_due,
    open_queues,
    queue_filter,
    queue_limits,
    queue_listing,
    started_parent,
    version_filter,
)
from taskloom.store.faults import Fault, Outage, TransientStoreError, classify_postgres, first_contact, retrying
from taskloom.store.migrations import load_migrations

if TYPE_CHECKING:
    from taskloom.store.records import Expired, MessageRecord, QueueRecord, ScheduleRecord

Connection = psycopg.Connection[TupleRow]

CONNECT_TIMEOUT_SECONDS = 10
#: Default of TASKLOOM_STORE_RETRY_SECONDS (see taskloom.settings).
DEFAULT_RETRY_SECONDS = 30.0
#: How long wait_for_work pauses between attempts to reconnect its LISTEN connection during an outage.
RELISTEN_DELAY = 0.5
#: Connections the pool keeps for reuse; more may be open while more threads are inside the store at once
#: (a call that finds every pooled connection busy for POOL_WAIT_SECONDS opens one for itself).
MAX_IDLE_CONNECTIONS = 8
POOL_WAIT_SECONDS = 1.0
#: psycopg prepares a statement on a connection at its this-many-th execution there (psycopg's default):
#: a step's write, run a thousand times, is parsed and planned once. Measured (benchmarks/
#: bench_steps_postgres.py): unprepared steps cost 1.5-2x more; 0 (prepare every statement on its first
#: run) gains nothing over 5, costs a second round trip on the first run of every other statement, and
#: cannot run the migrations (PostgreSQL does not prepare a text of several statements).
PREPARE_THRESHOLD = 5
#: Key of the advisory lock held while migrating, so stores starting together migrate one at a time.
MIGRATION_LOCK_KEY = int.from_bytes(b"taskloom", "big")
#: Channel of the NOTIFY sent when work is queued; its payload is the workflow's name.
WORK_CHANNEL = "taskloom_work"

_EXECUTION_COLUMNS = (
    "id, workflow, status, input, output, created_at, updated_at, target, lease_owner, lease_expires_at, crashes, "
    "wake_at, parent_id, version, queue"
)
_INSERT_STARTED = "INSERT INTO events (execution_id, type, name, value, data, ts) VALUES (%s, %s, %s, %s, %s, %s)"
_NOTIFY_WORK = f"SELECT pg_notify('{WORK_CHANNEL}', %s)"

# A write under a fence in one statement, hence one round trip (sent in autocommit, it is its own
# transaction): the execution's row is taken (locked, or updated) only if the fence holds, and the events
# are inserted only from that row, so a refused write writes nothing; its seqs are taken under the row's
# lock, as in the transaction of append_events. The texts are stable (one per shape of write, the values
# always bound), so psycopg prepares each once per connection.
_FENCE = (
    "id = %(id)s AND (%(owner)s::text IS NULL OR lease_owner = %(owner)s) "
    "AND (%(expected)s::text IS NULL OR status = %(expected)s)"
)
#: Writes of up to this many events (a step's is two: its start and its outcome) bind each value as it
#: is, one VALUES row per event; more are bound as arrays to unnest, which costs the client (dumping
#: arrays) and the server (unnesting them) more than the rest of the statement.
BOUND_EVENTS = 4


@functools.cache
def _insert_events_sql(target: str, count: int) -> str:
    """INSERT of ``count`` events for the execution ``target`` yields (a CTE or a subquery: no row, no
    events), in the caller's order, RETURNING their seqs. Bytes are bound in binary (%b), not escaped."""
    if 0 < count <= BOUND_EVENTS:
        rows = ", ".join(
            f"({i}, %(type{i})s::text, %(step_id{i})s::text, %(name{i})s::text, %(value{i})b::bytea, "
            f"%(data{i})s::text, %(start{i})b::bytea)"
            for i in range(count)
        )
        batch = f"(VALUES {rows}) AS batch (position, type, step_id, name, value, data, start_value)"
    else:
        batch = (
            "unnest(%(types)s::text[], %(step_ids)s::text[], %(names)s::text[], %(values)s::bytea[], "
            "%(data)s::text[], %(starts)s::bytea[]) WITH ORDINALITY "
            "AS batch (type, step_id, name, value, data, start_value, position)"
        )
    return (
        "INSERT INTO events (execution_id, type, step_id, name, value, data, ts, start_value) "
        "SELECT target.id, batch.type, batch.step_id, batch.name, batch.value, batch.data, %(now)s, "
        f"batch.start_value FROM {target} AS target, {batch} ORDER BY batch.position RETURNING seq"
    )


@functools.cache
def _append_sql(moves: bool, count: int) -> str:
    """The fenced write of ``count`` events as one statement; ``moves``: it sets the execution's status
    too, and wakes the workers (NOTIFY) when it puts the execution back on the queue. Its rows: the seqs
    written, or one row holding the highest (NULL for none); no row: refused by the fence, or no such
    execution."""
    if not moves:  # the row lock that SELECT ... FOR NO KEY UPDATE takes in append_events' transaction
        fenced = f"WITH target AS (SELECT id FROM executions WHERE {_FENCE} FOR NO KEY UPDATE) "
        if count:  # a step's write: the INSERT itself is the statement, its seqs its rows
            return fenced + _insert_events_sql("target", count)
        return fenced + "SELECT NULL FROM target"
    return (
        "WITH target AS (UPDATE executions SET status = %(status)s, output = %(output)s, updated_at = %(now)s, "
        f"wake_at = %(wake_at)s WHERE {_FENCE} RETURNING id, workflow), "
        f"written AS ({_insert_events_sql('target', count)}) "
        "SELECT (SELECT MAX(seq) FROM written), "
        f"CASE WHEN %(queued)s THEN pg_notify('{WORK_CHANNEL}', workflow) IS NULL END FROM target"
    )


def redacted(url: str) -> str:
    """``url`` without its password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # Replace only the password in the netloc: the host stays as written (an IPv6 one keeps its brackets).
    userinfo, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{host}"))


class ChannelListener:
    """One LISTEN connection and the wait on it: how queues on PostgreSQL wake their workers.

    ``wait`` answers True at once on its first call (and after a lost connection), because work queued
    before LISTEN took effect sent no notification it could see: the caller should look before waiting.
    Only one thread waits at a time; the others return False after their timeout.
    """

    def __init__(self, connect: Callable[[], Connection], channel: str) -> None:
        self._connect = connect
        self._channel = channel
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def wait(self, timeout: float) -> bool:
        """True when work may be waiting; during an outage, False after ``timeout`` (or a short pause)
        spent trying to listen again, so the caller's next store call meets the outage and its retries.

        A store error that waiting does not cure (a wrong password) is raised.
        """
        started = time.monotonic()
        if not self._lock.acquire(timeout=max(0.0, timeout)):
            return False  # another thread is the waiter
        try:
            conn = self._conn
            if conn is None or conn.closed:
                try:
                    conn = self._connect()
                except TransientStoreError:
                    # The server is down or restarting: pause (bounded by the caller's timeout), then let
                    # the caller look; its store calls wait out the outage or report it.
                    pause = min(RELISTEN_DELAY, max(0.0, timeout - (time.monotonic() - started)))
                    time.sleep(pause)
                    return False
                try:
                    conn.execute(f"LISTEN {self._channel}")
                except psycopg.Error:
                    conn.close()
                    return False
                self._conn = conn
                return True
            try:
                woke = any(True for _ in conn.notifies(timeout=max(0.0, timeout), stop_after=1))
                if woke:  # one wake-up for a burst: the caller claims until the queue is empty
                    for _ in conn.notifies(timeout=0):
                        pass
                return woke
            except psycopg.Error:
                conn.close()  # lost (server restart, close()): LISTEN again on the next call
                return True
        finally:
            self._lock.release()

    def detach(self) -> Connection | None:
        """After a fork: forget the parent's connection (returned, to keep it unused) and its lock."""
        conn, self._conn = self._conn, None
        self._lock = threading.Lock()
        return conn

    def close(self) -> None:
        """Close the connection; a wait blocked on it ends early and reports work (True)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class _StoreOpened(psycopg.Connection[TupleRow]):
    """How the pool opens a connection: psycopg_pool calls ``connection_class.connect(url, **kwargs)``
    (in its worker thread), and this one calls the store's opener instead, so pooled connections are
    opened like every other (the session's timeout set, its errors classified)."""

    @classmethod
    def connect(  # type: ignore[override]
        cls, conninfo: str = "", *, opener: Callable[[], Connection], **kwargs: Any
    ) -> Connection:
        return opener()


#: the longest a transaction of ours may sit idle (its process paused) before the server ends it and
#: frees its locks; our transactions never wait on anything but the server between their statements
IDLE_IN_TRANSACTION_SECONDS = 10.0


class PostgresFaults:
    """How the retry loop reads this store's errors (:class:`~taskloom.store.faults.FaultPolicy`)."""

    faults: tuple[type[Exception], ...] = (psycopg.Error, OSError, TransientStoreError)

    def __init__(self, url: str, retry_seconds: float, on_transient: Callable[[], None]) -> None:
        self.where = f"the PostgreSQL store {redacted(url)}"
        self.retry_seconds = retry_seconds
        self._on_transient = on_transient

    def classify(self, error: Exception) -> Fault:
        if isinstance(error, OSError):
            return Fault(True, f"connection lost: {error}")
        return classify_postgres(error)

    def on_transient(self, error: Exception) -> None:
        self._on_transient()


class PostgresStore:
    """A Store over one PostgreSQL database; safe to share between threads and forked processes.

    ``retry_seconds`` is how long a call keeps retrying a transient fault (a lost connection, a restart)
    before it raises StoreUnavailableError.
    """

    def __init__(self, url: str, *, retry_seconds: float = DEFAULT_RETRY_SECONDS) -> None:
        self.url = url
        self._faults = PostgresFaults(url, retry_seconds, self._discard_idle)
        self._outage = Outage()
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # Opened by the first call that needs a connection, and again after close() or a fork.
        self._pool: ConnectionPool[Connection] | None = None
        # The migrations' connection, handed to the pool as its first (see _pooled_connection).
        self._spare: Connection | None = None
        # Set by a lost connection: calls connect directly (their errors are theirs to see and retry)
        # until one succeeds, which then renews the pool (the fault left its connections dead).
        self._reconnecting = False
        # What the parent process left: its pool and connections, kept referenced, never closed (see
        # _after_fork).
        self._inherited: list[object] = []
        # The LISTEN connection of wait_for_work, opened by its first call.
        self._work_listener = ChannelListener(self._connect_autocommit, WORK_CHANNEL)
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    # -- connections -------------------------------------------------------------------------------
    def _connect(self) -> Connection:
        return self._open_connection(autocommit=False)

    def _connect_autocommit(self) -> Connection:
        return self._open_connection(autocommit=True)

    def _open_connection(self, *, autocommit: bool) -> Connection:
        """A new connection: the one place they are opened (the pool's too, see _pooled_connection).
        Also called outside the retry loop (the instance queue and the LISTEN connection), so it raises
        store errors itself: TransientStoreError while the server is down."""
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                prepare_threshold=PREPARE_THRESHOLD,
            )
            # A process paused mid-transaction (SIGSTOP, a frozen VM or container) would hold its row locks
            # for as long as it stays paused: every claim skips a locked execution, so the execution would
            # be stuck though its lease expired. The server ends such a session instead (the paused process
            # finds its connection gone and retries on a new one, fenced by its lease like any other write).
            conn.execute(f"SET idle_in_transaction_session_timeout = {int(IDLE_IN_TRANSACTION_SECONDS * 1000)}")
            conn.autocommit = autocommit
            return conn
        except psycopg.Error as error:
            fault = self._faults.classify(error)
            message = f"cannot connect to {self._faults.where}: {fault.message}"
            raise (TransientStoreError(message) if fault.transient else StoreError(message)) from error

    def _pooled_connection(self) -> Connection:
        """A connection for the pool (called in its worker thread): the migrations' if still open, else new."""
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and not spare.closed:
            return spare
        return self._open_connection(autocommit=True)

    def _new_pool(self) -> ConnectionPool[Connection]:
        pool: ConnectionPool[Connection] = ConnectionPool(
            self.url,
            connection_class=_StoreOpened,
            kwargs={"opener": self._pooled_connection},
            min_size=0,  # nothing opened (nor retried in the background) before a call needs it
            max_size=MAX_IDLE_CONNECTIONS,
            open=False,
            name=f"taskloom {redacted(self.url)}",
            num_workers=1,  # it only opens connections, one at a time
        )
        pool.open()
        return pool

    def _current_pool(self) -> ConnectionPool[Connection]:
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            return self._pool

    def _discard_idle(self) -> None:
        """After a lost connection: a restart kills every connection in the pool. The next call connects
        directly, so it meets the outage at once (and retries it); its success renews the pool."""
        if self._pid != os.getpid():
            return  # the next checkout starts afresh (see _after_fork)
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.close()
        self._reconnecting = True

    def _after_fork(self) -> None:
        # The parent's connections share their sockets with the parent: closing them here would send
        # the server a goodbye on the parent's behalf. Keep them referenced and unused (psycopg does not
        # close a connection garbage-collected in another process either; the parent's pool is never
        # closed here, its threads do not exist here) and start a fresh pool. The lock is replaced without
        # being taken: another parent thread may have held it at the fork.
        self._inherited.extend(thing for thing in (self._pool, self._spare, self._work_listener.detach()) if thing)
        self._pool = self._spare = None
        self._reconnecting = False
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _checkout(self) -> tuple[Connection, ConnectionPool[Connection] | None]:
        """A connection, in autocommit, and the pool to give it back to (None: close it after use)."""
        pool = self._current_pool()
        if not self._reconnecting:
            try:
                return pool.getconn(timeout=POOL_WAIT_SECONDS), pool
            except (PoolTimeout, PoolClosed):
                pass  # every pooled connection busy, or none can be opened: connecting directly tells which
        conn = self._open_connection(autocommit=True)
        if self._reconnecting:
            self._reconnecting = False
            self._renew_pool(pool)
        return conn, None

    def _renew_pool(self, old: ConnectionPool[Connection]) -> None:
        """After an outage, the next calls get a new pool: the old one's idle connections died with the
        fault, and a connection it failed to open meanwhile would be retried only after its backoff (up to
        seconds), holding back its growth. The old pool closes the connections still in use as they come
        back."""
        with self._lock:
            if self._pool is old:
                self._pool = None
        old.close(timeout=POOL_WAIT_SECONDS)

    @staticmethod
    def _checkin(conn: Connection, pool: ConnectionPool[Connection] | None) -> None:
        # The pool keeps a connection only if it is idle and alive, and closes it if the pool is closed.
        if pool is None:
            conn.close()
        else:
            pool.putconn(conn)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A pooled connection for one statement that only reads, run outside any transaction.

        Through :meth:`_transaction` a read costs three round trips (BEGIN, the SELECT, COMMIT); in
        autocommit it costs one. A single statement sees one consistent snapshot either way.
        """
        conn, pool = self._checkout()
        try:
            yield conn
        finally:
            self._checkin(conn, pool)

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """One transaction on a pooled connection: committed on exit, rolled back on any exception."""
        conn, pool = self._checkout()
        try:
            with conn.transaction():
                yield conn
        finally:
            self._checkin(conn, pool)

    @first_contact
    def _migrate(self) -> None:
        migrations = load_migrations("postgres")
        latest = migrations[-1][0]
        # A connection of its own, not the pool's: the pool opens connections in a thread of its own,
        # where a wrong password would only be logged, and the first contact must say it at once.
        conn = self._open_connection(autocommit=True)
        try:
            self._migrate_on(conn, migrations, latest)
        except BaseException:
            conn.close()
            raise
        self._spare = conn

    def _migrate_on(self, conn: Connection, migrations: list[tuple[int, str]], latest: int) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = (row[0] if row else None) or 0
            if current > latest:
                raise StoreError(
                    f"the store {redacted(self.url)} has schema version {current}, newer than this taskloom "
                    f"knows ({latest}); upgrade taskloom"
                )
            if current == 0 and conn.execute("SELECT to_regclass('executions')").fetchone() != (None,):
                raise StoreError(
                    f"the store {redacted(self.url)} has taskloom tables but no schema version: it is damaged "
                    "or was edited by hand; restore it from a backup (taskloom will not migrate it blind)"
                )
            for version, sql in migrations:
                if version > current:
                    conn.execute(sql)  # a whole migration file; no parameters, so several statements
                    conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    def close(self) -> None:
        """Close the pooled connections; the store stays usable and reconnects on its next call."""
        if self._pid != os.getpid():
            self._after_fork()
            return
        with self._lock:
            pool, self._pool = self._pool, None
            spare, self._spare = self._spare, None
        if pool is not None:
            pool.close()  # a connection in use is closed when it is given back
        if spare is not None:
            spare.close()
        self._work_listener.close()

    # -- executions --------------------------------------------------------------------------------
    @retrying
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
        now = time.time()
        expires_at = None if lease_seconds is None else now + lease_seconds
        with self._transaction() as conn:
            # ON CONFLICT DO NOTHING: a duplicate id is answered without aborting the transaction.
            inserted = conn.execute(
                "INSERT INTO executions (id, workflow, target, status, input, created_at, updated_at, "
                "lease_owner, lease_expires_at, wake_at, parent_id, queue, priority, version) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (
                    execution_id,
                    workflow,
                    target,
                    status,
                    input,
                    now,
                    now,
                    None if expires_at is None else lease_owner,
                    expires_at,
                    wake_at,
                    started_parent(started_data),
                    queue,
                    priority,
                    version,
                ),
            ).rowcount
            if not inserted:
                raise ExecutionStateError(f"execution {execution_id!r} already exists; nothing was written")
            conn.execute(
                _INSERT_STARTED,
                (execution_id, EventType.EXECUTION_STARTED.value, workflow, input, event_data_json(started_data), now),
            )
            if status == ExecutionStatus.QUEUED:
                conn.execute(_NOTIFY_WORK, (workflow,))

    @retrying
    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        with self._read() as conn:
            query = f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = %s"
            row = conn.execute(query, (execution_id,)).fetchone()
        return ExecutionRecord(*row) if row else None

    @retrying
    def list_executions(
        self,
        *,
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 100,
        after: tuple[float, str] | None = None,
        id_prefix: str | None = None,
    ) -> list[ExecutionRecord]:
        check_limit(limit)
        where, params = listing_where(
            workflow=workflow, status=status, after=after, id_prefix=id_prefix, mark="%s", id_column='id COLLATE "C"'
        )
        # COLLATE "C": ties break by code point, as in SQLite, whatever the database's collation.
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions {where} "
                'ORDER BY created_at DESC, id COLLATE "C" LIMIT %s',
                (*params, int(limit)),
            ).fetchall()
        return [ExecutionRecord(*row) for row in rows]

    # -- events ------------------------------------------------------------------------------------
    @retrying
    def load_events(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE execution_id = %s AND seq > %s ORDER BY seq",
                (execution_id, after_seq),
            ).fetchall()
        return decode_events(self._faults.where, execution_id, rows)

    @retrying
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
        if not events and status is None and expected_status is None:
            return 0
        now = time.time()
        if wake_on_message is None or status != ExecutionStatus.PAUSED:
            rows = merge_steps(events)
            params: dict[str, Any] = {
                "id": execution_id,
                "owner": lease_owner,
                "expected": expected_status,
                "now": now,
                **_event_params(rows),
            }
            if status is not None:
                queued = status == ExecutionStatus.QUEUED
                params.update(status=status, output=output, wake_at=wake_at, queued=queued)
            written = self._append_at_once(_append_sql(status is not None, len(rows)), params)
            if written is not None:
                return written
        # Refused or not found (the transaction below says which, as the caller reads it), or a pause that
        # a message already sent may end at once (read under the row's lock there).
        with self._transaction() as conn:
            # Lock the execution's row before taking seqs (see the module docstring); the lock also makes
            # the expected status hold until the commit.
            if status is not None and expected_status is None and lease_owner is None:
                row = conn.execute(
                    "UPDATE executions SET status = %s, output = %s, updated_at = %s, wake_at = %s WHERE id = %s "
                    "RETURNING workflow",
                    (status, output, now, wake_at, execution_id),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT workflow, status, lease_owner FROM executions WHERE id = %s FOR NO KEY UPDATE",
                    (execution_id,),
                ).fetchone()
            if row is None:
                raise ExecutionNotFoundError(f"no execution {execution_id!r} in the store {redacted(self.url)}")
            workflow = row[0]
            if lease_owner is not None and row[2] != lease_owner:
                raise LeaseLostError(
                    f"execution {execution_id}: worker {lease_owner} no longer holds its lease "
                    f"(now {row[2] or 'nobody'}); nothing was written"
                )
            if expected_status is not None or lease_owner is not None:
                if expected_status is not None and row[1] != expected_status:
                    raise ExecutionStateError(
                        f"execution {execution_id} is {row[1]}, not {expected_status}: its state changed under "
                        "this operation; nothing was written"
                    )
                if status is not None:
                    conn.execute(
                        "UPDATE executions SET status = %s, output = %s, updated_at = %s, wake_at = %s WHERE id = %s",
                        (status, output, now, wake_at, execution_id),
                    )
            woken = False
            if wake_on_message is not None and status == ExecutionStatus.PAUSED:
                woken = _wake_if_unread(conn, execution_id, wake_on_message, now)
            if status == ExecutionStatus.QUEUED or woken:
                conn.execute(_NOTIFY_WORK, (workflow,))
            if not events:
                return 0
            seqs = _insert_events(conn, execution_id, events, now)
        return max(seqs)

    def _append_at_once(self, sql: str, params: Mapping[str, Any]) -> int | None:
        """The common write (a step's outcome under the run's lease) as one statement, :func:`_append_sql`:
        the highest seq written (0 for none), or None when nothing was written (refused by the fence, or
        no such execution)."""
        with self._read() as conn:  # autocommit: the statement is its own transaction
            rows = _kept_cursor(conn).execute(sql, params).fetchall()
        if not rows:
            return None
        return max((int(row[0]) for row in rows if row[0] is not None), default=0)

    # -- the work queue ----------------------------------------------------------------------------
    @retrying
    def claim_next_execution(
        self,
        worker_id: str,
        lease_seconds: float,
        workflows: Sequence[str],
        *,
        queues: Sequence[str] | None = None,
        versions: Mapping[str, str] | None = None,
    ) -> ExecutionRecord | None:
        if not workflows or queues == []:
            return None
        # SKIP LOCKED: workers polling together each take a different execution instead of queueing
        # behind one row lock; the claim and the lease are one statement.
        # The SET expressions read the row as it was, so crashes counts a holder that died (running, leased
        # to someone) before status and lease_owner are overwritten.
        with self._transaction() as conn:
            # A limited queue's row is locked first (FOR UPDATE, in name order): claims that may take from
            # it take turns, so each one's counts include every claim committed before it. The clock is
            # read after the counts, so claimed_at follows every claim and end those counts saw (a later
            # clock only makes the rate window count more, never less).
            limits = _queue_limits(conn, queues)
            fresh, takeover = open_queues(limits, lambda queue: _queue_counts(conn, queue, worker_id, time.time()))
            now = time.time()
            on_queues, queue_params = queue_filter(queues, limits, fresh, takeover, "%s")
            on_versions, version_params = version_filter(versions, "%s")
            row = conn.execute(
                "UPDATE executions SET status = 'running', lease_owner = %s, lease_expires_at = %s, "
                "updated_at = %s, wake_at = NULL, claimed_at = %s, crashes = crashes + "
                "  CASE WHEN status = 'running' AND lease_owner IS NOT NULL AND lease_owner <> %s THEN 1 ELSE 0 END "
                "WHERE id = ("
                "  SELECT id FROM executions WHERE workflow = ANY(%s) AND "
                "  ((status = 'queued' AND (wake_at IS NULL OR wake_at <= %s)) "
                "   OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < %s)) "
                f"   OR (status = 'paused' AND wake_at <= %s)){on_queues}{on_versions} "
                "  ORDER BY priority, created_at LIMIT 1 FOR UPDATE SKIP LOCKED"
                f") RETURNING {_EXECUTION_COLUMNS}",
                (
                    *(worker_id, now + lease_seconds, now, now, worker_id, list(workflows), now, now, now),
                    *queue_params,
                    *version_params,
                ),
            ).fetchone()
            record = None if row is None else ExecutionRecord(*row)
            if record is not None:
                _count_start(conn, limits, record.queue, now)
        return record

    @retrying
    def acquire_execution(
        self, execution_id: str, owner: str, lease_seconds: float, *, from_statuses: Sequence[str]
    ) -> Acquired:
        now = time.time()
        with self._transaction() as conn:
            row = conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = %s FOR UPDATE", (execution_id,)
            ).fetchone()
            if row is None:
                raise ExecutionNotFoundError(f"no execution {execution_id!r} in the store {redacted(self.url)}")
            before = ExecutionRecord(*row)
            taken = (
                before.status in from_statuses
                and not held_by_another(before, owner, now)
                and not not_yet_due(before, now)
            )
            if taken:
                conn.execute(
                    "UPDATE executions SET status = 'running', lease_owner = %s, lease_expires_at = %s, "
                    "updated_at = %s, wake_at = NULL, crashes = crashes + %s WHERE id = %s",
                    (owner, now + lease_seconds, now, 1 if holder_died(before, owner) else 0, execution_id),
                )
        return Acquired(before, taken)

    @retrying
    def renew_lease(self, execution_id: str, owner: str, lease_seconds: float) -> str | None:
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE executions SET lease_expires_at = %s WHERE id = %s AND lease_owner = %s RETURNING status",
                (time.time() + lease_seconds, execution_id, owner),
            ).fetchone()
        return None if row is None else str(row[0])

    @retrying
    def release_execution(
        self,
        execution_id: str,
        owner: str,
        *,
        requeue: bool,
        crashed: bool = False,
        retry_after: float | None = None,
    ) -> None:
        free_at = None if retry_after is None else time.time() + retry_after
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE executions SET lease_owner = NULL, lease_expires_at = %s, crashes = crashes + %s, "
                "status = CASE WHEN %s AND status = 'running' THEN 'queued' ELSE status END, "
                "wake_at = CASE WHEN %s AND status = 'running' THEN NULL ELSE wake_at END "
                "WHERE id = %s AND lease_owner = %s RETURNING status, workflow",
                (free_at, 1 if crashed else 0, requeue, requeue, execution_id, owner),
            ).fetchone()
            if row is not None and requeue and row[0] == ExecutionStatus.QUEUED:
                conn.execute(_NOTIFY_WORK, (row[1],))

    @retrying
    def next_lease_expiry(
        self,
        workflows: Sequence[str],
        *,
        versions: Mapping[str, str] | None = None,
        queues: Sequence[str] | None = None,
    ) -> float | None:
        if not workflows:
            return None
        on_versions, version_params = version_filter(versions, "%s")
        on_queues, queue_params = queue_filter(queues, (), (), (), "%s")
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT MIN(CASE WHEN status = 'running' THEN COALESCE(lease_expires_at, %s) ELSE wake_at END) "
                "FROM executions WHERE workflow = ANY(%s) AND status IN ('running', 'paused', 'queued')"
                f"{on_versions}{on_queues}",
                (time.time(), list(workflows), *version_params, *queue_params),
            ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    @retrying
    def pin_version(self, execution_id: str, version: str) -> str:
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE executions SET version = COALESCE(version, %s) WHERE id = %s RETURNING version",
                (version, execution_id),
            ).fetchone()
        if row is None:
            raise ExecutionNotFoundError(f"no execution {execution_id!r} in the store {redacted(self.url)}")
        return str(row[0])

    # -- workflow deadlines -------------------------------------------------------------------------
    @retrying
    def fix_deadline(self, execution_id: str, timeout: float) -> float | None:
        with self._transaction() as conn:
            row = conn.execute(FIX_DEADLINE, (timeout, execution_id)).fetchone()
        return None if row is None else float(row[0])

    @retrying
    def expire_executions(self, timeouts: Mapping[str, float], now: float, failure: DeadlineFailure) -> Expired:
        if not timeouts:
            from taskloom.store.records import Expired  # loaded on first use (records.py)

            return Expired((), None)
        with self._transaction() as conn:
            return expire_in_transaction(
                conn.execute,
                lambda execution_id, events: _insert_events(conn, execution_id, events, now),
                " FOR UPDATE SKIP LOCKED",
                timeouts,
                now,
                failure,
            )

    def wait_for_work(self, timeout: float) -> bool:
        if self._pid != os.getpid():
            self._after_fork()
        return self._work_listener.wait(timeout)

    # -- queues ------------------------------------------------------------------------------------
    @retrying
    def upsert_queue(self, queue: QueueRecord) -> None:
        with self._transaction() as conn:
            conn.execute(UPSERT_QUEUE, (*queue_limits(queue), time.time()))

    @retrying
    def list_queues(self) -> list[QueueRecord]:
        with self._read() as conn:
            return queue_listing(conn.execute(LIST_QUEUES).fetchall())

    # -- messages ----------------------------------------------------------------------------------
    @retrying
    def send_message(
        self,
        execution_id: str,
        topic: str,
        value: bytes | None,
        *,
        wake_pause: str,
        idempotency_key: str | None = None,
    ) -> int:
        now = time.time()
        with self._transaction() as conn:
            # The row lock a pause's write takes too (append_events): of a message and a pause written at
            # the same time, the later one sees the other; and of two sends with one key, the later one
            # sees the message of the other.
            found = conn.execute(
                "SELECT workflow, status FROM executions WHERE id = %s FOR NO KEY UPDATE", (execution_id,)
            ).fetchone()
            if found is None:
                raise ExecutionNotFoundError(f"no execution {execution_id!r} in the store {redacted(self.url)}")
            if idempotency_key is not None:
                sent = conn.execute(SENT_WITH_KEY, (execution_id, idempotency_key)).fetchone()
                if sent is not None:
                    return int(sent[0])
            workflow, status = found
            if status in ExecutionStatus.FINISHED:
                raise finished_error(execution_id, status)
            row = conn.execute(
                "INSERT INTO messages (execution_id, topic, value, sent_at, idempotency_key) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING seq",
                (execution_id, topic, value, now, idempotency_key),
            ).fetchone()
            if status == ExecutionStatus.PAUSED:
                pause = conn.execute(
                    "SELECT name FROM events WHERE execution_id = %s AND type = %s ORDER BY seq DESC LIMIT 1",
                    (execution_id, EventType.EXECUTION_PAUSED.value),
                ).fetchone()
                if pause is not None and pause[0] == wake_pause:
                    conn.execute("UPDATE executions SET wake_at = %s WHERE id = %s", (now, execution_id))
                    conn.execute(_NOTIFY_WORK, (workflow,))
        return int(row[0]) if row else 0

    @retrying
    def receive_message(
        self, execution_id: str, topic: str, step_id: str, receipt: ReceiptEvents, *, lease_owner: str | None
    ) -> tuple[int, bytes | None] | None:
        now = time.time()
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT status, lease_owner FROM executions WHERE id = %s FOR NO KEY UPDATE", (execution_id,)
            ).fetchone()
            if found is None:
                raise ExecutionNotFoundError(f"no execution {execution_id!r} in the store {redacted(self.url)}")
            if lease_owner is not None and found[1] != lease_owner:
                raise LeaseLostError(
                    f"execution {execution_id}: worker {lease_owner} no longer holds its lease "
                    f"(now {found[1] or 'nobody'}); nothing was written"
                )
            if found[0] != ExecutionStatus.RUNNING:
                raise ExecutionStateError(
                    f"execution {execution_id} is {found[0]}, not running: its state changed under this "
                    "operation; nothing was written"
                )
            row = conn.execute(
                "SELECT seq, value FROM messages WHERE execution_id = %s AND topic = %s AND received_step IS NULL "
                "ORDER BY seq LIMIT 1",
                (execution_id, topic),
            ).fetchone()
            if row is None:
                return None
            seq, value = int(row[0]), None if row[1] is None else bytes(row[1])
            conn.execute("UPDATE messages SET received_step = %s, received_at = %s WHERE seq = %s", (step_id, now, seq))
            _insert_events(conn, execution_id, receipt(seq, value), now)
        return seq, value

    @retrying
    def list_messages(self, execution_id: str) -> list[MessageRecord]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT seq, execution_id, topic, value, sent_at, received_step, received_at FROM messages "
                "WHERE execution_id = %s ORDER BY seq",
                (execution_id,),
            ).fetchall()
        from taskloom.store.records import MessageRecord  # loaded on first use (records.py)

        return [MessageRecord(int(r[0]), r[1], r[2], None if r[3] is None else bytes(r[3]), *r[4:]) for r in rows]

    # -- secrets -----------------------------------------------------------------------------------
    @retrying
    def put_secret(self, name: str, ciphertext: bytes) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO secrets (name, ciphertext, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, "
                "updated_at = excluded.updated_at",
                (name, ciphertext, time.time()),
            )

    @retrying
    def get_secret(self, name: str) -> bytes | None:
        with self._read() as conn:
            row = conn.execute("SELECT ciphertext FROM secrets WHERE name = %s", (name,)).fetchone()
        return bytes(row[0]) if row else None

    @retrying
    def list_secret_names(self) -> list[str]:
        with self._read() as conn:
            rows = conn.execute('SELECT name FROM secrets ORDER BY name COLLATE "C"').fetchall()
        return [name for (name,) in rows]

    @retrying
    def delete_secret(self, name: str) -> bool:
        with self._transaction() as conn:
            deleted = conn.execute("DELETE FROM secrets WHERE name = %s", (name,)).rowcount
        return bool(deleted)

    # -- the task cache ----------------------------------------------------------------------------
    @retrying
    def get_cached_result(self, task: str, key: str, now: float) -> bytes | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT value FROM task_cache WHERE task = %s AND key = %s AND (expires_at IS NULL OR expires_at > %s)",
                (task, key, now),
            ).fetchone()
        return bytes(row[0]) if row else None

    @retrying
    def put_cached_result(self, task: str, key: str, value: bytes, expires_at: float | None) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO task_cache (task, key, value, created_at, expires_at) VALUES (%s, %s, %s, %s, %s) "
                "ON CONFLICT (task, key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at, "
                "expires_at = excluded.expires_at",
                (task, key, value, time.time(), expires_at),
            )

    @retrying
    def clear_cached_results(self, task: str | None = None, *, expired_at: float | None = None) -> int:
        with self._transaction() as conn:
            deleted = conn.execute(
                "DELETE FROM task_cache WHERE (%s::text IS NULL OR task = %s) "
                "AND (%s::double precision IS NULL OR (expires_at IS NOT NULL AND expires_at <= %s))",
                (task, task, expired_at, expired_at),
            ).rowcount
        return int(deleted)

    # -- schedules ---------------------------------------------------------------------------------
    @retrying
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
        with self._transaction() as conn:
            row = conn.execute(
                f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, FALSE, %s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET target = excluded.target, cron = excluded.cron, "
                "timezone = excluded.timezone, input = excluded.input, catchup = excluded.catchup, "
                "updated_at = excluded.updated_at WHERE schedules.workflow = excluded.workflow "
                f"RETURNING {SCHEDULE_COLUMNS}",
                (name, workflow, target, cron, timezone, input, catchup, now, now, now),
            ).fetchone()
        from taskloom.store.records import ScheduleRecord  # loaded on first use (records.py)

        return None if row is None else ScheduleRecord.from_row(row)

    @retrying
    def get_schedule(self, name: str) -> ScheduleRecord | None:
        with self._read() as conn:
            row = conn.execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = %s", (name,)).fetchone()
        from taskloom.store.records import ScheduleRecord  # loaded on first use (records.py)

        return None if row is None else ScheduleRecord.from_row(row)

    @retrying
    def list_schedules(self, workflows: Sequence[str] | None = None) -> list[ScheduleRecord]:
        # COLLATE "C": by code point, as SQLite orders them, whatever the database's collation.
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE %s::text[] IS NULL OR workflow = ANY(%s) "
                'ORDER BY name COLLATE "C"',
                (None if workflows is None else list(workflows), None if workflows is None else list(workflows)),
            ).fetchall()
        from taskloom.store.records import ScheduleRecord  # loaded on first use (records.py)

        return [ScheduleRecord.from_row(row) for row in rows]

    @retrying
    def advance_schedule(self, name: str, expected_tick: float, new_tick: float) -> bool:
        with self._transaction() as conn:
            moved = conn.execute(
                "UPDATE schedules SET last_tick = %s WHERE name = %s AND last_tick = %s",
                (float(new_tick), name, float(expected_tick)),
            ).rowcount
        return bool(moved)

    @retrying
    def set_schedule_paused(self, name: str, paused: bool, *, now: float) -> ScheduleRecord | None:
        with self._transaction() as conn:
            row = conn.execute(
                "UPDATE schedules SET paused = %s, updated_at = %s, "
                "last_tick = CASE WHEN %s AND last_tick < %s THEN %s ELSE last_tick END "
                f"WHERE name = %s RETURNING {SCHEDULE_COLUMNS}",
                (paused, now, not paused, now, now, name),
            ).fetchone()
        from taskloom.store.records import ScheduleRecord  # loaded on first use (records.py)

        return None if row is None else ScheduleRecord.from_row(row)

    @retrying
    def delete_schedule(self, name: str) -> bool:
        with self._transaction() as conn:
            deleted = conn.execute("DELETE FROM schedules WHERE name = %s", (name,)).rowcount
        return bool(deleted)


def _queue_limits(conn: Connection, queues: Sequence[str] | None) -> list[QueueRecord]:
    """The limited queues among ``queues`` (None: all), as declared, their rows locked for the claim."""
    rows = conn.execute(
        f"SELECT {QUEUE_COLUMNS} FROM queues WHERE (concurrency IS NOT NULL OR worker_concurrency IS NOT NULL "
        "OR rate_count IS NOT NULL) AND (%s::text[] IS NULL OR name = ANY(%s)) ORDER BY name FOR UPDATE",
        (None if queues is None else list(queues), None if queues is None else list(queues)),
    ).fetchall()
    from taskloom.store.records import QueueRecord  # loaded on first use (records.py)

    return [QueueRecord(*row) for row in rows]


def _queue_counts(conn: Connection, queue: QueueRecord, worker_id: str, now: float) -> tuple[int, int, int]:
    """``(running, running for worker_id, starts within the rate window)`` of ``queue``, read in the claim."""
    row = conn.execute(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE lease_owner = %s) FROM executions "
        "WHERE queue = %s AND status = 'running'",
        (worker_id, queue.name),
    ).fetchone()
    running, mine = row if row else (0, 0)
    started = 0
    if queue.rate_count is not None and queue.rate_seconds is not None:
        found = conn.execute(
            "SELECT COUNT(*) FROM queue_starts WHERE queue = %s AND started_at > %s",
            (queue.name, now - queue.rate_seconds),
        ).fetchone()
        started = found[0] if found else 0
    return int(running), int(mine), int(started)


def _count_start(conn: Connection, limits: Sequence[QueueRecord], queue: str, now: float) -> None:
    """Record a claim on a rate-limited ``queue`` and forget the ones its window has left behind."""
    for limit in limits:
        if limit.name == queue and limit.rate_seconds is not None:
            conn.execute(
                "DELETE FROM queue_starts WHERE queue = %s AND started_at <= %s", (queue, now - limit.rate_seconds)
            )
            conn.execute("INSERT INTO queue_starts (queue, started_at) VALUES (%s, %s)", (queue, now))


def _kept_cursor(conn: Connection) -> psycopg.Cursor[TupleRow]:
    """A cursor kept on ``conn`` for the step's write: making a new one per statement (as
    ``conn.execute`` does) costs about a tenth of that statement's time on a local server. A pooled
    connection serves one thread at a time, so its cursor does too."""
    cursor: psycopg.Cursor[TupleRow] | None = getattr(conn, "_taskloom_cursor", None)
    if cursor is None or cursor.closed:
        cursor = conn.cursor()
        setattr(conn, "_taskloom_cursor", cursor)  # noqa: B010  (an attribute psycopg does not declare)
    return cursor


def _event_params(rows: Sequence[tuple[NewEvent, bytes | None]]) -> dict[str, Any]:
    """The rows of :func:`~taskloom.store.base.merge_steps` bound as :func:`_insert_events_sql` names
    them: by position, or as column arrays."""
    if 0 < len(rows) <= BOUND_EVENTS:
        params: dict[str, Any] = {}
        for i, (e, start_value) in enumerate(rows):
            params.update(
                {
                    f"type{i}": e.type.value,
                    f"step_id{i}": e.step_id,
                    f"name{i}": e.name,
                    f"value{i}": e.value,
                    f"data{i}": event_data_json(e.data),
                    f"start{i}": start_value,
                }
            )
        return params
    return {
        "types": [e.type.value for e, _ in rows],
        "step_ids": [e.step_id for e, _ in rows],
        "names": [e.name for e, _ in rows],
        "values": [e.value for e, _ in rows],
        "data": [event_data_json(e.data) for e, _ in rows],
        "starts": [start_value for _, start_value in rows],
    }


def _insert_events(conn: Connection, execution_id: str, events: Sequence[NewEvent], now: float) -> list[int]:
    """Append ``events`` (in a transaction that holds the execution's row lock)."""
    merged = merge_steps(events)
    sql = _insert_events_sql("(SELECT %(id)s::text AS id)", len(merged))
    rows = conn.execute(sql, {"id": execution_id, "now": now, **_event_params(merged)}).fetchall()
    return [int(seq) for (seq,) in rows]


def _wake_if_unread(conn: Connection, execution_id: str, topic: str, now: float) -> bool:
    """Make a receive that is pausing due now if a message of its topic is already there (the row is locked)."""
    return bool(
        conn.execute(
            "UPDATE executions SET wake_at = %s WHERE id = %s AND EXISTS (SELECT 1 FROM messages "
            "WHERE execution_id = %s AND topic = %s AND received_step IS NULL)",
            (now, execution_id, execution_id, topic),
        ).rowcount
    )
