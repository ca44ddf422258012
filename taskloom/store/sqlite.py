"""The embedded store: one SQLite file in WAL mode.

Every write is one ``BEGIN IMMEDIATE`` transaction, so two processes never interleave half-writes and a
writer waits (busy timeout) instead of failing. ``synchronous=NORMAL`` in WAL mode means a commit survives
the process being killed (SIGKILL) at any point; only a power loss may drop the last commits.
Each thread gets its own connection, so readers never wait on the event loop's writes.

Faults (:mod:`taskloom.store.faults`): a write lock held by another process past the busy timeout is
retried within the store's retry budget, then raised as StoreUnavailableError; a full disk, a read-only
file or a damaged database is a StoreError naming the file and what to do. A ROLLBACK that itself fails
closes the connection (the thread opens a new one), so a half-open transaction never outlives a fault.

The file is created readable by its owner only (0600), and so is the folder the store creates for it
(0700): it holds every workflow's inputs and results. SQLite gives the -wal and -shm files the same mode.
"""

from __future__ import annotations

# The C module the ``sqlite3`` package wraps, under its usual name: the package adds only date and time
# adapters (this store binds none) and the ``datetime`` import they need, 2 ms of a one-step process's
# start on a small machine (issue 12); every name used here is the C module's own.
import _sqlite3 as sqlite3
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

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
    fits_one_row,
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
from taskloom.store.faults import Fault, Outage, TransientStoreError, classify_sqlite, retrying
from taskloom.store.migrations import latest_migration, load_migrations, split_statements
from taskloom.typing_free import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from taskloom.store.records import Expired, MessageRecord, QueueRecord, ScheduleRecord

#: How many forks this process is from the one that imported this module: a connection opened before a
#: fork belongs to the parent (SQLite's connections must not cross one). Counted by a hook at fork time, not
#: asked of os.getpid() on every use: that is a system call, on every step's path.
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)

#: Defaults of TASKLOOM_SQLITE_BUSY_TIMEOUT and TASKLOOM_STORE_RETRY_SECONDS (see taskloom.settings).
DEFAULT_BUSY_TIMEOUT = 30.0
DEFAULT_RETRY_SECONDS = 30.0
#: An execution's events are the seqs ``number * 2**SEQ_BITS + 1, + 2, ...`` (migration 017): reading them is a
#: range of the table's own key, and the table needs no index of its own (one page per write, not two).
SEQ_BITS = 24


def _bounds(number: str) -> tuple[str, str]:
    """The bounds, both excluded, of the seqs of the execution whose number is the SQL ``number``."""
    return f"({number} << {SEQ_BITS})", f"(({number} + 1) << {SEQ_BITS})"


def _in_range(seq: str, number: str) -> str:
    """SQL: ``seq`` is one of the seqs of the execution whose number is ``number``."""
    low, high = _bounds(number)
    return f"{seq} > {low} AND {seq} < {high}"


#: The next seq of execution ``x``: one past its last event (a seek to the end of its range), or its first.
_NEXT_SEQ = (
    f"coalesce((SELECT max(seq) FROM events WHERE {_in_range('seq', 'x.number')}), {_bounds('x.number')[0]}) + 1"
)
#: The seqs of the execution ``?1`` after ``?2``, in the FROM of a query (``x`` its row, ``ev`` its events).
_EVENTS_OF = (
    f"executions x JOIN events ev ON ev.seq > max({_bounds('x.number')[0]}, ?2) "
    f"AND ev.seq < {_bounds('x.number')[1]} WHERE x.id = ?1"
)


def events_of_executions(ids: str) -> str:
    """``FROM ... WHERE ...`` of the events (alias ``ev``) of the executions whose ids ``ids`` gives (a list
    of marks, or a SELECT of ids): the executions read by id, then each one's range of seqs."""
    return f"executions x JOIN events ev ON {_in_range('ev.seq', 'x.number')} WHERE x.id IN ({ids})"


#: an events row of the row ``executions`` (in a correlated subquery): its range of seqs holds any
HAS_EVENTS = f"EXISTS (SELECT 1 FROM events WHERE {_in_range('seq', 'executions.number')})"
_EVENT_COLUMNS_EV = ", ".join(f"ev.{column}" for column in EVENT_COLUMNS.split(", "))
#: An event of execution ``?1``, written only if the execution exists (no foreign key: the insert reads
#: its row for the seq anyway). Its rowid is the seq.
_INSERT_EVENT = (
    "INSERT INTO events (seq, execution_id, type, step_id, name, value, data, ts, start_value) "
    f"SELECT {_NEXT_SEQ}, x.id, ?2, ?3, ?4, ?5, ?6, ?7, ?8 FROM executions x WHERE x.id = ?1"
)
_LAST_SEQ_AND_FENCE = "SELECT last_insert_rowid(), status, lease_owner FROM executions WHERE id = ?"
#: A step's write under the run's lease (its start and outcome, one row: base.merge_steps) as ONE
#: statement in autocommit, the hot path: the row is inserted only from the execution's row, and only
#: if the fence holds, so a refused write writes nothing, and the statement is its own transaction
#: (SQLite takes the write lock for it as BEGIN IMMEDIATE would).
_INSERT_FENCED = f"{_INSERT_EVENT} AND (?9 IS NULL OR x.lease_owner = ?9) AND (?10 IS NULL OR x.status = ?10)"


def _insert_step(seq: str, insert: str = "INSERT") -> str:
    """A step's row with no data, at the seq the SQL ``seq`` gives, from execution ``?1``'s row and only if
    its fence holds (lease ``?8``, status ``?9``); see _INSERT_STEP."""
    return (
        f"{insert} INTO events (seq, execution_id, type, step_id, name, value, data, ts, start_value) "
        f"SELECT {seq}, x.id, ?2, ?3, ?4, ?5, NULL, ?6, ?7 FROM executions x WHERE x.id = ?1 "
        "AND (?8 IS NULL OR x.lease_owner = ?8) AND (?9 IS NULL OR x.status = ?9)"
    )


#: The same for a row with no data (a step's start and outcome: nearly every write), its NULL written in the
#: statement rather than bound, and its blobs bound as bytearray: Python 3.11's sqlite3 binds int, float,
#: str and bytearray at once but looks for an adapter (a dict lookup and two attribute lookups) for every
#: bytes or None parameter, which cost this statement as much as a third of what it adds to the floor.
_INSERT_STEP = _insert_step(_NEXT_SEQ)
#: _INSERT_STEP at a seq given (?10): the one after the last this store wrote for the execution. An INSERT
#: whose SELECT reads the table it writes (the next seq, above) makes SQLite copy the row through a
#: temporary table first, which cost the statement as much as all the rest of it; this one reads only the
#: execution's row. It writes nothing (OR IGNORE) if the seq is not in the execution's range, or another
#: writer took it meanwhile (the primary key), or the fence does not hold: _INSERT_STEP then says which.
_INSERT_STEP_AT = _insert_step("?10", "INSERT OR IGNORE") + f" AND {_in_range('?10', 'x.number')}"
#: how many executions' last seqs a store remembers (see SQLiteStore._last_seqs); forgotten all at once
LAST_SEQS_KEPT = 10_000
_EXECUTION_COLUMNS = (
    "id, workflow, status, input, output, created_at, updated_at, target, lease_owner, lease_expires_at, crashes, "
    "wake_at, parent_id, version, queue"
)


def _column_exists(statement: str, error: sqlite3.OperationalError) -> bool:
    """Whether ``error`` is an ``ALTER TABLE ... ADD COLUMN`` meeting a column that is already there."""
    return statement.lstrip().upper().startswith("ALTER TABLE") and "duplicate column name" in str(error)


def file_from_url(url: str) -> str:
    """The database file a ``sqlite://`` URL (or a bare path) names, as given."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]
    if url.startswith("sqlite://"):
        return url[len("sqlite://") :]
    return url


def path_from_url(url: str) -> Path:
    """:func:`file_from_url` as a Path (a store keeps the str: a run need not load pathlib)."""
    from pathlib import Path

    return Path(file_from_url(url))


class SQLiteFaults:
    """How the retry loop reads this store's errors (:class:`~taskloom.store.faults.FaultPolicy`)."""

    def __init__(self, path: str, retry_seconds: float) -> None:
        self.path = path
        self.where = f"the SQLite store {path!r}"
        self.retry_seconds = retry_seconds
        self.faults: tuple[type[Exception], ...] = (sqlite3.Error, OSError, TransientStoreError)

    def classify(self, error: Exception) -> Fault:
        if isinstance(error, OSError):  # creating the file or its folder
            return Fault(False, f"{error.strerror or error}: check that its folder can be created and written")
        return classify_sqlite(error, self.path)

    def on_transient(self, error: Exception) -> None:
        """Nothing to drop: a busy SQLite connection stays usable."""


class SQLiteStore:
    """A Store over one SQLite file; safe to share between threads and processes.

    ``busy_timeout`` is how long one write waits for another process's write lock (seconds), and
    ``retry_seconds`` how long a call keeps retrying after that before StoreUnavailableError; so a call
    gives up after at most ``retry_seconds`` plus one ``busy_timeout``.
    """

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.url = url
        #: the database file, as the URL names it (:attr:`path` as a Path)
        self.file = os.path.normpath(file_from_url(url))
        self.busy_timeout = busy_timeout
        self._faults = SQLiteFaults(self.file, retry_seconds)
        self._outage = Outage()
        self._local = threading.local()
        #: the seq of the last step row this store wrote for each execution (the hot path's, by any thread):
        #: the next one is its successor unless another writer took it, which the insert itself finds out
        #: (_INSERT_STEP_AT). Read and written without a lock: a stale value only costs the general statement.
        self._last_seqs: dict[str, int] = {}
        #: every connection opened, with the thread it belongs to (each thread has its own: :meth:`_conn`)
        self._connections: list[tuple[sqlite3.Connection, threading.Thread]] = []
        self._lock = threading.Lock()
        # Set when this object queues work; other processes' work is found by polling (wait_for_work).
        self._work_queued = threading.Event()
        self._open()

    @property
    def path(self) -> Path:
        """The database file as a Path."""
        from pathlib import Path

        return Path(self.file)

    @retrying
    def _open(self) -> None:
        _create_private(self.file)
        self._migrate(self._conn())

    # -- connections -------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use.

        Called outside the retry loop too (the instance queue borrows it), so it raises store errors
        itself: TransientStoreError for a lock, StoreError for the rest.
        """
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.forks == _forks:
            return conn
        try:
            conn = sqlite3.connect(self.file, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout)
        except sqlite3.Error as error:
            raise self._store_error(error) from error
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as error:
            conn.close()
            raise self._store_error(error) from error
        self._local.conn = conn
        self._local.forks = _forks
        with self._lock:
            self._connections.append((conn, threading.current_thread()))
        return conn

    def _store_error(self, error: Exception) -> StoreError:
        fault = self._faults.classify(error)
        message = f"{self._faults.where}: {fault.message}"
        return TransientStoreError(message) if fault.transient else StoreError(message)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on this thread's connection: ``BEGIN IMMEDIATE`` (the database's write
        lock, waited for up to the busy timeout), committed on exit, rolled back by :meth:`_rollback` on
        any exception, which never hides the error that caused it."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def _rollback(self, conn: sqlite3.Connection) -> None:
        """Roll back after a failed statement, never raising: a ROLLBACK with no transaction open (BEGIN
        or COMMIT failed) is fine; one that fails while a transaction stays open costs the connection."""
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            if conn.in_transaction:
                self._drop(conn)

    def _drop(self, conn: sqlite3.Connection) -> None:
        """Close ``conn`` and forget it; this thread opens a fresh one on its next call."""
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            self._connections = [entry for entry in self._connections if entry[0] is not conn]
        try:
            conn.close()
        except sqlite3.Error:
            pass

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL answers "database is locked" at once (no busy wait) when another
        # connection opens it at the same moment; retry within the busy timeout.
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if time.monotonic() > deadline or "locked" not in str(error):
                    raise
                time.sleep(0.005)  # a bounded poll of the lock, not synchronisation

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if _schema_version(conn) == latest_migration("sqlite"):
            return  # the common case, every process's first open: one read, no write lock, no files read
        migrations = load_migrations("sqlite")
        latest = migrations[-1][0]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > latest:
                raise StoreError(
                    f"the store {self.file!r} has schema version {current}, newer than this taskloom "
                    f"knows ({latest}); upgrade taskloom"
                )
            if (
                current == 0
                and conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'executions'").fetchone()
            ):
                raise StoreError(
                    f"the store {self.file!r} has taskloom tables but no schema version: it is damaged "
                    "or was edited by hand; restore it from a backup (taskloom will not migrate it blind)"
                )
            for version, sql in migrations:
                if version > current:
                    for statement in split_statements(sql):
                        try:
                            conn.execute(statement)
                        except sqlite3.OperationalError as error:
                            # No ADD COLUMN IF NOT EXISTS in SQLite: a store whose version rows were removed
                            # by hand migrates again, keeping the column it has.
                            if not _column_exists(statement, error):
                                raise
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def close(self) -> None:
        """Close this thread's connection and those of threads that have ended; forget the others.

        Another thread may be in the middle of a statement on its connection (an embedded runner, a lease
        keeper): closing it under that statement crashes the process (SQLite's connection is not
        thread-safe), so it is left to its thread. Forgotten here, it closes when that thread lets go of
        it; a thread that uses the store again opens a new one.
        """
        me = threading.current_thread()
        with self._lock:
            connections, self._connections = self._connections, []
        for conn, owner in connections:
            if owner is me or not owner.is_alive():
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
        self._local = threading.local()

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
        conn = self._conn()
        now = time.time()
        expires_at = None if lease_seconds is None else now + lease_seconds
        conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                conn.execute(
                    "INSERT INTO executions (id, workflow, target, status, input, created_at, updated_at, "
                    "lease_owner, lease_expires_at, wake_at, parent_id, queue, priority, version, number) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                    "(SELECT coalesce(max(number), 0) + 1 FROM executions))",
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
                )
            except sqlite3.IntegrityError as error:
                if "executions.id" in str(error):  # the id's own key: one of that id exists, nothing is written
                    raise _exists(execution_id) from None
                raise
            started = (EventType.EXECUTION_STARTED.value, None, workflow, input, event_data_json(started_data), now)
            conn.execute(_INSERT_EVENT, (execution_id, *started, None))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        if status == ExecutionStatus.QUEUED:
            self._work_queued.set()

    @retrying
    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,))
            .fetchone()
        )
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
            workflow=workflow, status=status, after=after, id_prefix=id_prefix, mark="?", id_column="id"
        )
        rows = (
            self._conn()
            .execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions {where} ORDER BY created_at DESC, id LIMIT ?",
                (*params, int(limit)),
            )
            .fetchall()
        )
        return [ExecutionRecord(*row) for row in rows]

    # -- events ------------------------------------------------------------------------------------
    @retrying
    def load_events(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {_EVENT_COLUMNS_EV} FROM {_EVENTS_OF} ORDER BY ev.seq",
                (execution_id, after_seq),
            )
            .fetchall()
        )
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
        conn = self._conn()
        woken = False
        now = time.time()
        rows = _event_rows(execution_id, events, now)
        fenced = expected_status is not None or lease_owner is not None
        if fenced and status is None and len(rows) == 1:
            row: tuple[object, ...]
            execution, kind, step_id, name, value, data, ts, start_value = rows[0]
            known = None
            if data is None:
                statement, row = _INSERT_STEP, (execution, kind, step_id, name, _blob(value), ts, _blob(start_value))
                known = self._last_seqs.get(execution_id)
                if known is not None:  # the next seq known: the statement that reads no events (_INSERT_STEP_AT)
                    written = conn.execute(_INSERT_STEP_AT, (*row, lease_owner, expected_status, known + 1))
                    if written.rowcount == 1:
                        self._last_seqs[execution_id] = known + 1
                        return known + 1
            else:
                statement, row = _INSERT_FENCED, rows[0]
            try:
                written = conn.execute(statement, (*row, lease_owner, expected_status))
            except sqlite3.IntegrityError:
                raise self._full(execution_id) from None
            if written.rowcount == 1:
                seq = int(written.lastrowid or 0)
                if data is None:
                    if known is None and len(self._last_seqs) >= LAST_SEQS_KEPT:
                        self._last_seqs.clear()
                    self._last_seqs[execution_id] = seq
                return seq
            # Refused or not found: nothing was written; the transaction below says which, as the caller
            # reads it (and writes the row after all if the fence holds by then).
        conn.execute("BEGIN IMMEDIATE")
        try:
            last: int | None = 0  # no events: 0, as PostgreSQL answers (last_insert_rowid() would be stale)
            if not rows:
                if fenced:
                    self._check_fence(conn, execution_id, expected_status, lease_owner)
            else:
                # Several events (or one, not fenced): the last seq and the fence are read in one statement
                # after inserting; a refused write is rolled back whole. An execution that does not exist
                # takes no row (the insert reads its row for the seq).
                if conn.executemany(_INSERT_EVENT, rows).rowcount != len(rows):
                    raise self._not_found(execution_id)
                last, status_now, owner_now = conn.execute(_LAST_SEQ_AND_FENCE, (execution_id,)).fetchone()
                _refuse_unless_fenced(execution_id, status_now, owner_now, expected_status, lease_owner)
            if status is not None:
                updated = conn.execute(
                    "UPDATE executions SET status = ?, output = ?, updated_at = ?, wake_at = ? WHERE id = ?",
                    (status, output, now, wake_at, execution_id),
                ).rowcount
                if not updated:
                    raise self._not_found(execution_id)
                if wake_on_message is not None and status == ExecutionStatus.PAUSED:
                    woken = _wake_if_unread(conn, execution_id, wake_on_message, now)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            self._rollback(conn)
            raise self._full(execution_id) from None
        except BaseException:
            self._rollback(conn)
            raise
        if status == ExecutionStatus.QUEUED or woken:
            self._work_queued.set()
        return int(last or 0)

    def _check_fence(
        self, conn: sqlite3.Connection, execution_id: str, expected_status: str | None, lease_owner: str | None
    ) -> None:
        """Raise what a write fenced by ``expected_status`` and ``lease_owner`` must raise, if anything."""
        found = conn.execute("SELECT status, lease_owner FROM executions WHERE id = ?", (execution_id,)).fetchone()
        if found is None:
            raise self._not_found(execution_id)
        _refuse_unless_fenced(execution_id, found[0], found[1], expected_status, lease_owner)

    def _full(self, execution_id: str) -> StoreError:
        """An event refused by the events table's CHECK: the execution has used every seq of its range."""
        return StoreError(
            f"execution {execution_id!r} holds the most events one execution can in the store {self.url} "
            f"({2**SEQ_BITS - 1:,} rows); nothing more can be written to it. Split such work into child "
            "workflows, or start a new execution."
        )

    def _not_found(self, execution_id: str) -> ExecutionNotFoundError:
        return ExecutionNotFoundError(f"no execution {execution_id!r} in the store {self.url}")

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
        conn = self._conn()
        marks = ", ".join("?" for _ in workflows)
        conn.execute("BEGIN IMMEDIATE")
        try:
            # The clock is read under the write lock, after the counts, so claimed_at follows every claim
            # and end those counts saw (a later clock only makes the rate window count more, never less).
            limits = _queue_limits(conn, queues)
            fresh, takeover = open_queues(limits, lambda queue: _queue_counts(conn, queue, worker_id, time.time()))
            now = time.time()
            on_queues, queue_params = queue_filter(queues, limits, fresh, takeover, "?")
            on_versions, version_params = version_filter(versions, "?")
            row = conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE workflow IN ({marks}) AND "
                "((status = 'queued' AND (wake_at IS NULL OR wake_at <= ?)) "
                "   OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < ?)) "
                f" OR (status = 'paused' AND wake_at <= ?)){on_queues}{on_versions} "
                "ORDER BY priority, created_at LIMIT 1",
                (*workflows, now, now, now, *queue_params, *version_params),
            ).fetchone()
            if row is not None:
                record = ExecutionRecord(*row)
                crashes = record.crashes + (1 if holder_died(record, worker_id) else 0)
                conn.execute(
                    "UPDATE executions SET status = 'running', lease_owner = ?, lease_expires_at = ?, updated_at = ?, "
                    "crashes = ?, wake_at = NULL, claimed_at = ? WHERE id = ?",
                    (worker_id, now + lease_seconds, now, crashes, now, record.id),
                )
                _count_start(conn, limits, record.queue, now)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        if row is None:
            return None
        return record.replace(
            status=ExecutionStatus.RUNNING,
            updated_at=now,
            lease_owner=worker_id,
            lease_expires_at=now + lease_seconds,
            crashes=crashes,
            wake_at=None,
        )

    @retrying
    def acquire_execution(
        self, execution_id: str, owner: str, lease_seconds: float, *, from_statuses: Sequence[str]
    ) -> Acquired:
        conn = self._conn()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,)).fetchone()
            if row is None:
                raise self._not_found(execution_id)
            before = ExecutionRecord(*row)
            taken = (
                before.status in from_statuses
                and not held_by_another(before, owner, now)
                and not not_yet_due(before, now)
            )
            if taken:
                conn.execute(
                    "UPDATE executions SET status = 'running', lease_owner = ?, lease_expires_at = ?, "
                    "updated_at = ?, wake_at = NULL, crashes = crashes + ? WHERE id = ?",
                    (owner, now + lease_seconds, now, 1 if holder_died(before, owner) else 0, execution_id),
                )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return Acquired(before, taken)

    @retrying
    def renew_lease(self, execution_id: str, owner: str, lease_seconds: float) -> str | None:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE executions SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? RETURNING status",
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
        conn = self._conn()
        crash = 1 if crashed else 0
        free_at = None if retry_after is None else time.time() + retry_after
        if not requeue:  # one statement, its own transaction: what ends most runs
            conn.execute(_FREE_LEASE, (free_at, crash, execution_id, owner))
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            requeued = conn.execute(
                "UPDATE executions SET lease_owner = NULL, lease_expires_at = NULL, status = 'queued', wake_at = NULL, "
                "crashes = crashes + ? WHERE id = ? AND lease_owner = ? AND status = 'running'",
                (crash, execution_id, owner),
            ).rowcount
            if not requeued:
                conn.execute(_FREE_LEASE, (free_at, crash, execution_id, owner))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        if requeued:
            self._work_queued.set()

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
        marks = ", ".join("?" for _ in workflows)
        on_versions, version_params = version_filter(versions, "?")
        on_queues, queue_params = queue_filter(queues, (), (), (), "?")
        row = (
            self._conn()
            .execute(
                "SELECT MIN(CASE WHEN status = 'running' THEN COALESCE(lease_expires_at, ?) ELSE wake_at END) "
                f"FROM executions WHERE workflow IN ({marks}) AND status IN ('running', 'paused', 'queued')"
                f"{on_versions}{on_queues}",
                (time.time(), *workflows, *version_params, *queue_params),
            )
            .fetchone()
        )
        return float(row[0]) if row and row[0] is not None else None

    @retrying
    def pin_version(self, execution_id: str, version: str) -> str:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE executions SET version = COALESCE(version, ?) WHERE id = ? RETURNING version",
                (version, execution_id),
            ).fetchone()
        if row is None:
            raise self._not_found(execution_id)
        return str(row[0])

    # -- workflow deadlines -------------------------------------------------------------------------
    @retrying
    def fix_deadline(self, execution_id: str, timeout: float) -> float | None:
        with self._write() as conn:
            row = conn.execute(FIX_DEADLINE.replace("%s", "?"), (timeout, execution_id)).fetchone()
        return None if row is None else float(row[0])

    @retrying
    def expire_executions(self, timeouts: Mapping[str, float], now: float, failure: DeadlineFailure) -> Expired:
        if not timeouts:
            from taskloom.store.records import Expired  # loaded on first use (records.py)

            return Expired((), None)
        with self._write() as conn:

            def execute(sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
                return conn.execute(sql.replace("%s", "?"), params)

            def insert(execution_id: str, events: Sequence[NewEvent]) -> None:
                conn.executemany(_INSERT_EVENT, _event_rows(execution_id, events, now))

            return expire_in_transaction(execute, insert, "", timeouts, now, failure)

    def wait_for_work(self, timeout: float) -> bool:
        woke = self._work_queued.wait(max(0.0, timeout))
        self._work_queued.clear()
        return woke

    # -- queues ------------------------------------------------------------------------------------
    @retrying
    def upsert_queue(self, queue: QueueRecord) -> None:
        with self._write() as conn:
            conn.execute(UPSERT_QUEUE.replace("%s", "?"), (*queue_limits(queue), time.time()))

    @retrying
    def list_queues(self) -> list[QueueRecord]:
        return queue_listing(self._conn().execute(LIST_QUEUES).fetchall())

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
        conn = self._conn()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")  # the database's write lock: a pause being written waits, or is seen
        try:
            if idempotency_key is not None:
                sent = conn.execute(SENT_WITH_KEY.replace("%s", "?"), (execution_id, idempotency_key)).fetchone()
                if sent is not None:
                    conn.execute("COMMIT")
                    return int(sent[0])
            found = conn.execute("SELECT status FROM executions WHERE id = ?", (execution_id,)).fetchone()
            if found is None:
                raise self._not_found(execution_id)
            if found[0] in ExecutionStatus.FINISHED:
                raise finished_error(execution_id, found[0])
            seq = conn.execute(
                "INSERT INTO messages (execution_id, topic, value, sent_at, idempotency_key) VALUES (?, ?, ?, ?, ?)",
                (execution_id, topic, value, now, idempotency_key),
            ).lastrowid
            woken = found[0] == ExecutionStatus.PAUSED and _last_pause(conn, execution_id) == wake_pause
            if woken:
                conn.execute("UPDATE executions SET wake_at = ? WHERE id = ?", (now, execution_id))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        if woken:
            self._work_queued.set()
        return int(seq or 0)

    @retrying
    def receive_message(
        self, execution_id: str, topic: str, step_id: str, receipt: ReceiptEvents, *, lease_owner: str | None
    ) -> tuple[int, bytes | None] | None:
        conn = self._conn()
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._check_fence(conn, execution_id, ExecutionStatus.RUNNING, lease_owner)
            row = conn.execute(
                "SELECT seq, value FROM messages WHERE execution_id = ? AND topic = ? AND received_step IS NULL "
                "ORDER BY seq LIMIT 1",
                (execution_id, topic),
            ).fetchone()
            if row is not None:
                seq, value = int(row[0]), None if row[1] is None else bytes(row[1])
                conn.execute(
                    "UPDATE messages SET received_step = ?, received_at = ? WHERE seq = ?", (step_id, now, seq)
                )
                conn.executemany(_INSERT_EVENT, _event_rows(execution_id, receipt(seq, value), now))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return None if row is None else (seq, value)

    @retrying
    def list_messages(self, execution_id: str) -> list[MessageRecord]:
        rows = (
            self._conn()
            .execute(
                "SELECT seq, execution_id, topic, value, sent_at, received_step, received_at FROM messages "
                "WHERE execution_id = ? ORDER BY seq",
                (execution_id,),
            )
            .fetchall()
        )
        from taskloom.store.records import MessageRecord  # loaded on first use (records.py)

        return [MessageRecord(int(r[0]), r[1], r[2], None if r[3] is None else bytes(r[3]), *r[4:]) for r in rows]

    # -- secrets -----------------------------------------------------------------------------------
    @retrying
    def put_secret(self, name: str, ciphertext: bytes) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO secrets (name, ciphertext, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, "
                "updated_at = excluded.updated_at",
                (name, ciphertext, time.time()),
            )

    @retrying
    def get_secret(self, name: str) -> bytes | None:
        row = self._conn().execute("SELECT ciphertext FROM secrets WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    @retrying
    def list_secret_names(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT name FROM secrets ORDER BY name").fetchall()]

    @retrying
    def delete_secret(self, name: str) -> bool:
        with self._write() as conn:
            deleted = conn.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount
        return bool(deleted)

    # -- the task cache ----------------------------------------------------------------------------
    @retrying
    def get_cached_result(self, task: str, key: str, now: float) -> bytes | None:
        row = (
            self._conn()
            .execute(
                "SELECT value FROM task_cache WHERE task = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)",
                (task, key, now),
            )
            .fetchone()
        )
        return bytes(row[0]) if row else None

    @retrying
    def put_cached_result(self, task: str, key: str, value: bytes, expires_at: float | None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO task_cache (task, key, value, created_at, expires_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (task, key) DO UPDATE SET value = excluded.value, created_at = excluded.created_at, "
                "expires_at = excluded.expires_at",
                (task, key, value, time.time(), expires_at),
            )

    @retrying
    def clear_cached_results(self, task: str | None = None, *, expired_at: float | None = None) -> int:
        clauses: list[str] = []
        params: list[object] = []
        if task is not None:
            clauses.append("task = ?")
            params.append(task)
        if expired_at is not None:
            clauses.append("expires_at IS NOT NULL AND expires_at <= ?")
            params.append(expired_at)
        with self._write() as conn:
            where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
            deleted = conn.execute(f"DELETE FROM task_cache {where}", params).rowcount
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
        with self._write() as conn:
            row = conn.execute(
                f"INSERT INTO schedules ({SCHEDULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) "
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
        row = self._conn().execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?", (name,)).fetchone()
        from taskloom.store.records import ScheduleRecord  # loaded on first use (records.py)

        return None if row is None else ScheduleRecord.from_row(row)

    @retrying
    def list_schedules(self, workflows: Sequence[str] | None = None) -> list[ScheduleRecord]:
        if workflows is None:
            rows = self._conn().execute(f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name").fetchall()
        else:
            marks = ", ".join("?" for _ in workflows)
            rows = (
                self._conn()
                .execute(
                    f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE workflow IN ({marks}) ORDER BY name",
                    list(workflows),
                )
                .fetchall()
            )
        from taskloom.store.records import ScheduleRecord  # loaded on first use (records.py)

        return [ScheduleRecord.from_row(row) for row in rows]

    @retrying
    def advance_schedule(self, name: str, expected_tick: float, new_tick: float) -> bool:
        with self._write() as conn:
            moved = conn.execute(
                "UPDATE schedules SET last_tick = ? WHERE name = ? AND last_tick = ?",
                (float(new_tick), name, float(expected_tick)),
            ).rowcount
        return bool(moved)

    @retrying
    def set_schedule_paused(self, name: str, paused: bool, *, now: float) -> ScheduleRecord | None:
        with self._write() as conn:
            row = conn.execute(
                "UPDATE schedules SET paused = ?, updated_at = ?, "
                "last_tick = CASE WHEN ? AND last_tick < ? THEN ? ELSE last_tick END "
                f"WHERE name = ? RETURNING {SCHEDULE_COLUMNS}",
                (1 if paused else 0, now, 0 if paused else 1, now, now, name),
            ).fetchone()
        from taskloom.store.records import ScheduleRecord  # loaded on first use (records.py)

        return None if row is None else ScheduleRecord.from_row(row)

    @retrying
    def delete_schedule(self, name: str) -> bool:
        with self._write() as conn:
            deleted = conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount
        return bool(deleted)


def _queue_limits(conn: sqlite3.Connection, queues: Sequence[str] | None) -> list[QueueRecord]:
    """The limited queues among ``queues`` (None: all), as declared."""
    where, params = "", list(queues or ())
    if queues is not None:
        where = f" AND name IN ({', '.join('?' for _ in queues)})"
    rows = conn.execute(
        f"SELECT {QUEUE_COLUMNS} FROM queues WHERE (concurrency IS NOT NULL OR worker_concurrency IS NOT NULL "
        f"OR rate_count IS NOT NULL){where} ORDER BY name",
        params,
    ).fetchall()
    from taskloom.store.records import QueueRecord  # loaded on first use (records.py)

    return [QueueRecord(*row) for row in rows]


def _queue_counts(conn: sqlite3.Connection, queue: QueueRecord, worker_id: str, now: float) -> tuple[int, int, int]:
    """``(running, running for worker_id, starts within the rate window)`` of ``queue``, read in the claim."""
    running, mine = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(lease_owner = ?), 0) FROM executions WHERE queue = ? AND status = 'running'",
        (worker_id, queue.name),
    ).fetchone()
    started = 0
    if queue.rate_count is not None and queue.rate_seconds is not None:
        started = conn.execute(
            "SELECT COUNT(*) FROM queue_starts WHERE queue = ? AND started_at > ?",
            (queue.name, now - queue.rate_seconds),
        ).fetchone()[0]
    return int(running), int(mine), int(started)


def _count_start(conn: sqlite3.Connection, limits: Sequence[QueueRecord], queue: str, now: float) -> None:
    """Record a claim on a rate-limited ``queue`` and forget the ones its window has left behind."""
    for limit in limits:
        if limit.name == queue and limit.rate_seconds is not None:
            conn.execute(
                "DELETE FROM queue_starts WHERE queue = ? AND started_at <= ?", (queue, now - limit.rate_seconds)
            )
            conn.execute("INSERT INTO queue_starts (queue, started_at) VALUES (?, ?)", (queue, now))


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The store's schema version, or None when it has none yet (a new file): read without a lock."""
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:  # no such table: a new store
        return None
    return None if row is None or row[0] is None else int(row[0])


def _blob(value: Any) -> bytearray | None:
    """A blob as sqlite3 binds it without looking for an adapter (see _INSERT_STEP)."""
    return None if value is None else bytearray(value)


def _event_rows(execution_id: str, events: Sequence[NewEvent], now: float) -> list[tuple[object, ...]]:
    """The rows of ``events`` as _INSERT_EVENT binds them: a step's start and outcome as one
    (:func:`~taskloom.store.base.merge_steps`)."""
    if len(events) == 2 and fits_one_row(started := events[0], outcome := events[1]):  # a step's write: the hot path
        value = b"" if started.value is None else started.value
        data = event_data_json(outcome.data) if outcome.data else None
        return [(execution_id, outcome.type._value_, outcome.step_id, outcome.name, outcome.value, data, now, value)]
    return [
        (
            execution_id,
            # The exact str: sqlite3 binds a str subclass (a StrEnum) only after looking for an adapter, and
            # .value is a property; _value_ is the plain attribute behind it.
            e.type._value_,
            e.step_id,
            e.name,
            e.value,
            event_data_json(e.data) if e.data else None,  # most events have none: no call
            now,
            start_value,
        )
        for e, start_value in merge_steps(events)
    ]


def _last_pause(conn: sqlite3.Connection, execution_id: str) -> str | None:
    """The name of the execution's latest pause (what a paused execution waits for)."""
    row = conn.execute(
        f"SELECT ev.name FROM {_EVENTS_OF} AND ev.type = ?3 ORDER BY ev.seq DESC LIMIT 1",
        (execution_id, 0, EventType.EXECUTION_PAUSED.value),
    ).fetchone()
    return None if row is None else str(row[0])


def _wake_if_unread(conn: sqlite3.Connection, execution_id: str, topic: str, now: float) -> bool:
    """Make a receive that is pausing due now if a message of its topic is already there."""
    return bool(
        conn.execute(
            "UPDATE executions SET wake_at = ? WHERE id = ? AND EXISTS (SELECT 1 FROM messages "
            "WHERE execution_id = ? AND topic = ? AND received_step IS NULL)",
            (now, execution_id, execution_id, topic),
        ).rowcount
    )


def _exists(execution_id: str) -> ExecutionStateError:
    return ExecutionStateError(f"execution {execution_id!r} already exists; nothing was written")


def _refuse_unless_fenced(
    execution_id: str, status: str, owner: str | None, expected_status: str | None, lease_owner: str | None
) -> None:
    if lease_owner is not None and owner != lease_owner:
        raise _lease_lost(execution_id, lease_owner, owner)
    if expected_status is not None and status != expected_status:
        raise _conflict(execution_id, status, expected_status)


def _lease_lost(execution_id: str, worker: str, holder: str | None) -> LeaseLostError:
    return LeaseLostError(
        f"execution {execution_id}: worker {worker} no longer holds its lease (now {holder or 'nobody'}); "
        "nothing was written"
    )


def _conflict(execution_id: str, status: str, expected: str) -> ExecutionStateError:
    return ExecutionStateError(
        f"execution {execution_id} is {status}, not {expected}: its state changed under this operation; "
        "nothing was written"
    )


#: give up a lease: nobody holds the execution, free to take at ``lease_expires_at`` (None: at once)
_FREE_LEASE = (
    "UPDATE executions SET lease_owner = NULL, lease_expires_at = ?, crashes = crashes + ? "
    "WHERE id = ? AND lease_owner = ?"
)


def _create_private(path: str) -> None:
    """Create the store's folder (0700) and empty file (0600) if missing: only their owner may read them.

    An existing folder or file keeps its mode (the user chose it). SQLite reads an empty file as an empty
    database, and gives the -wal and -shm files the database file's mode.
    """
    if path == ":memory:" or os.path.exists(path):
        return
    path = os.path.realpath(path)  # a link to a file not there yet: create its target, privately
    folder = os.path.dirname(path)
    if not os.path.exists(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)
