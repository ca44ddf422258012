"""The embedded store: one SQLite file in WAL mode.

Every write is one ``BEGIN IMMEDIATE`` transaction, so two processes never interleave half-writes and a
writer waits (busy timeout) instead of failing. ``synchronous=NORMAL`` in WAL mode means a commit survives
the process being killed (SIGKILL) at any point; only a power loss may drop the last commits.
Each thread gets its own connection, so readers never wait on the event loop's writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from taskloom.errors import ExecutionNotFoundError, ExecutionStateError, LeaseLostError, StoreError
from taskloom.events import Event, EventType, NewEvent
from taskloom.store.base import Acquired, ExecutionRecord, ExecutionStatus, check_limit, held_by_another, holder_died
from taskloom.store.migrations import load_migrations, split_statements

BUSY_TIMEOUT_MS = 30_000
_INSERT_EVENT = "INSERT INTO events (execution_id, type, step_id, name, value, data, ts) VALUES (?, ?, ?, ?, ?, ?, ?)"
_EXECUTION_COLUMNS = (
    "id, workflow, status, input, output, created_at, updated_at, target, lease_owner, lease_expires_at, crashes"
)


def path_from_url(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    if url.startswith("sqlite://"):
        return Path(url[len("sqlite://") :])
    return Path(url)


class SQLiteStore:
    """A Store over one SQLite file; safe to share between threads and processes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = path_from_url(url)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create the folder for the SQLite store {str(self.path)!r}: {error}") from None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Set when this object queues work; other processes' work is found by polling (wait_for_work).
        self._work_queued = threading.Event()
        self._migrate(self._conn())

    # -- connections -------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the SQLite store {str(self.path)!r}: {error}") from None
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    @staticmethod
    def _enable_wal(conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL answers "database is locked" at once (no busy wait) when another
        # connection opens it at the same moment; retry within the busy timeout.
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        migrations = load_migrations("sqlite")
        latest = migrations[-1][0]
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > latest:
                raise StoreError(
                    f"the store {str(self.path)!r} has schema version {current}, newer than this taskloom "
                    f"knows ({latest}); upgrade taskloom"
                )
            for version, sql in migrations:
                if version > current:
                    for statement in split_statements(sql):
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    # -- executions --------------------------------------------------------------------------------
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
    ) -> None:
        conn = self._conn()
        now = time.time()
        expires_at = None if lease_seconds is None else now + lease_seconds
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM executions WHERE id = ?", (execution_id,)).fetchone() is not None:
                raise _exists(execution_id)
            conn.execute(
                "INSERT INTO executions (id, workflow, target, status, input, created_at, updated_at, "
                "lease_owner, lease_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )
            conn.execute(
                "INSERT INTO events (execution_id, type, name, value, data, ts) VALUES (?, ?, ?, ?, ?, ?)",
                (execution_id, EventType.EXECUTION_STARTED.value, workflow, input, None, now),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if status == ExecutionStatus.QUEUED:
            self._work_queued.set()

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        row = (
            self._conn()
            .execute(f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = ?", (execution_id,))
            .fetchone()
        )
        return ExecutionRecord(*row) if row else None

    def list_executions(
        self, *, workflow: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[ExecutionRecord]:
        check_limit(limit)
        clauses, params = [], []
        if workflow is not None:
            clauses.append("workflow = ?")
            params.append(workflow)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
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
    def load_events(self, execution_id: str, after_seq: int = 0) -> list[Event]:
        rows = (
            self._conn()
            .execute(
                "SELECT seq, type, ts, step_id, name, value, data FROM events "
                "WHERE execution_id = ? AND seq > ? ORDER BY seq",
                (execution_id, after_seq),
            )
            .fetchall()
        )
        return [Event.from_row(execution_id, row) for row in rows]

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
    ) -> int:
        if not events and status is None and expected_status is None:
            return 0
        conn = self._conn()
        now = time.time()
        rows = [
            (
                execution_id,
                e.type.value,
                e.step_id,
                e.name,
                e.value,
                json.dumps(e.data, separators=(",", ":")) if e.data else None,
                now,
            )
            for e in events
        ]
        conn.execute("BEGIN IMMEDIATE")
        try:
            if expected_status is not None or lease_owner is not None:
                found = conn.execute(
                    "SELECT status, lease_owner FROM executions WHERE id = ?", (execution_id,)
                ).fetchone()
                if found is None:
                    raise self._not_found(execution_id)
                if lease_owner is not None and found[1] != lease_owner:
                    raise _lease_lost(execution_id, lease_owner, found[1])
                if expected_status is not None and found[0] != expected_status:
                    raise _conflict(execution_id, found[0], expected_status)
            last: int | None = 0  # no events: 0, as PostgreSQL answers (last_insert_rowid() would be stale)
            if len(rows) == 1:
                last = conn.execute(_INSERT_EVENT, rows[0]).lastrowid
            elif rows:
                conn.executemany(_INSERT_EVENT, rows)
                last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            if status is not None:
                updated = conn.execute(
                    "UPDATE executions SET status = ?, output = ?, updated_at = ?, wake_at = ? WHERE id = ?",
                    (status, output, now, wake_at, execution_id),
                ).rowcount
                if not updated:
                    raise self._not_found(execution_id)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise self._not_found(execution_id) from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if status == ExecutionStatus.QUEUED:
            self._work_queued.set()
        return int(last or 0)

    def _not_found(self, execution_id: str) -> ExecutionNotFoundError:
        return ExecutionNotFoundError(f"no execution {execution_id!r} in the store {self.url}")

    # -- the work queue ----------------------------------------------------------------------------
    def claim_next_execution(
        self, worker_id: str, lease_seconds: float, workflows: Sequence[str]
    ) -> ExecutionRecord | None:
        if not workflows:
            return None
        conn = self._conn()
        now = time.time()
        marks = ", ".join("?" for _ in workflows)
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE workflow IN ({marks}) AND "
                "(status = 'queued' OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at < ?)) "
                " OR (status = 'paused' AND wake_at <= ?)) "
                "ORDER BY created_at LIMIT 1",
                (*workflows, now, now),
            ).fetchone()
            if row is not None:
                record = ExecutionRecord(*row)
                crashes = record.crashes + (1 if holder_died(record, worker_id) else 0)
                conn.execute(
                    "UPDATE executions SET status = 'running', lease_owner = ?, lease_expires_at = ?, updated_at = ?, "
                    "crashes = ? WHERE id = ?",
                    (worker_id, now + lease_seconds, now, crashes, record.id),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if row is None:
            return None
        return dataclasses.replace(
            record,
            status=ExecutionStatus.RUNNING,
            updated_at=now,
            lease_owner=worker_id,
            lease_expires_at=now + lease_seconds,
            crashes=crashes,
        )

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
            taken = before.status in from_statuses and not held_by_another(before, owner, now)
            if taken:
                conn.execute(
                    "UPDATE executions SET status = 'running', lease_owner = ?, lease_expires_at = ?, "
                    "updated_at = ?, crashes = crashes + ? WHERE id = ?",
                    (owner, now + lease_seconds, now, 1 if holder_died(before, owner) else 0, execution_id),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return Acquired(before, taken)

    def renew_lease(self, execution_id: str, owner: str, lease_seconds: float) -> str | None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "UPDATE executions SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? RETURNING status",
                (time.time() + lease_seconds, execution_id, owner),
            ).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return None if row is None else str(row[0])

    def release_execution(self, execution_id: str, owner: str, *, requeue: bool, crashed: bool = False) -> None:
        conn = self._conn()
        crash = 1 if crashed else 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            requeued = conn.execute(
                "UPDATE executions SET lease_owner = NULL, lease_expires_at = NULL, status = 'queued', "
                "crashes = crashes + ? WHERE id = ? AND lease_owner = ? AND ? AND status = 'running'",
                (crash, execution_id, owner, 1 if requeue else 0),
            ).rowcount
            if not requeued:
                conn.execute(
                    "UPDATE executions SET lease_owner = NULL, lease_expires_at = NULL, crashes = crashes + ? "
                    "WHERE id = ? AND lease_owner = ?",
                    (crash, execution_id, owner),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if requeued:
            self._work_queued.set()

    def next_lease_expiry(self, workflows: Sequence[str]) -> float | None:
        if not workflows:
            return None
        marks = ", ".join("?" for _ in workflows)
        row = (
            self._conn()
            .execute(
                "SELECT MIN(CASE WHEN status = 'running' THEN COALESCE(lease_expires_at, ?) ELSE wake_at END) "
                f"FROM executions WHERE workflow IN ({marks}) AND status IN ('running', 'paused')",
                (time.time(), *workflows),
            )
            .fetchone()
        )
        return float(row[0]) if row and row[0] is not None else None

    def wait_for_work(self, timeout: float) -> bool:
        woke = self._work_queued.wait(max(0.0, timeout))
        self._work_queued.clear()
        return woke

    # -- secrets -----------------------------------------------------------------------------------
    def put_secret(self, name: str, ciphertext: bytes) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO secrets (name, ciphertext, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET ciphertext = excluded.ciphertext, "
                "updated_at = excluded.updated_at",
                (name, ciphertext, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def get_secret(self, name: str) -> bytes | None:
        row = self._conn().execute("SELECT ciphertext FROM secrets WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    def list_secret_names(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT name FROM secrets ORDER BY name").fetchall()]

    def delete_secret(self, name: str) -> bool:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = conn.execute("DELETE FROM secrets WHERE name = ?", (name,)).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return bool(deleted)


def _exists(execution_id: str) -> ExecutionStateError:
    return ExecutionStateError(f"execution {execution_id!r} already exists; nothing was written")


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
