"""Retention: remove finished executions (and what only they used) once they are older than a setting.

The store otherwise only grows: every execution's events and messages, every instance session's
updates. ``taskloom prune --older-than 30d`` removes them once; with ``TASKLOOM_RETENTION=30d`` every
worker prunes on its own, about once an hour (deletes are idempotent, so workers need no coordination).

What is never touched:

- an execution that is not finished (queued, running, paused, sleeping): only ``completed``, ``failed``
  and ``cancelled`` ones are candidates, and ``--status`` can only narrow that;
- a finished execution whose parent or any of whose children is not finished: a live parent still
  reads its child's record, and a live child still names its parent;
- schedules (their executions are ordinary executions; the schedule itself stays);
- an instance session while any of its instances is queued or running.

"Older than" counts from an execution's last change (``updated_at``: when it finished).

**Never stalling running workflows.** Deleting a million events in one transaction would hold SQLite's
write lock (or PostgreSQL row locks and WAL) for seconds. Pruning deletes in small transactions
(:data:`CHUNK_ROWS` rows each) and after each one waits as long as that transaction took, so writers
waiting for the lock always get it within about one chunk's time. ``benchmarks/bench_prune.py``
measures the longest stall a running workflow's step sees while a million events are pruned.

Outputs kept outside the database (:class:`~taskloom.outputs.LocalFileOutputStorage`) are removed with
their executions when their storage is known: the worker knows every storage its workflows' tasks use,
and ``taskloom prune MODULE...`` imports the modules to learn them (or ``--output-dir DIR``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskloom.errors import TaskloomError

if TYPE_CHECKING:
    from taskloom.store.base import Store
    from taskloom.store.statements import Statements

__all__ = [
    "FINISHED",
    "PruneReport",
    "Pruner",
    "RetentionError",
    "parse_age",
    "prune",
]

log = logging.getLogger("taskloom.retention")

#: the statuses an execution can be pruned in: finished ones only
FINISHED = ("completed", "failed", "cancelled")
#: rows deleted per transaction: small enough that a waiting writer never waits long for the lock
CHUNK_ROWS = 500
#: executions taken per batch (their events are then deleted CHUNK_ROWS at a time)
BATCH_EXECUTIONS = 100
#: The events an events row holds, as the report counts them (what ``ctx.events`` shows): a row holding
#: a step's start and its outcome (start_value set, taskloom.store.base.merge_steps) is two.
_EVENTS_IN_ROW = "CASE WHEN start_value IS NULL THEN 1 ELSE 2 END"
_EVENTS_IN_ROWS = "COUNT(*) + COUNT(start_value)"
#: how often a worker prunes when TASKLOOM_RETENTION is set
PRUNE_EVERY_SECONDS = 3600.0
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


class RetentionError(TaskloomError):
    """A retention setting or prune option that cannot be used; the message names it."""


def parse_age(text: str, *, what: str = "--older-than") -> float:
    """``"30d"`` -> seconds. Units: s, m, h, d, w. ``what`` names the option in the error."""
    match = _AGE.match(str(text))
    if match is None or float(match.group(1)) <= 0:
        raise RetentionError(
            f"{what} {text!r} is not an age: give a positive number and a unit, e.g. 30d, 12h, 90m, 2w"
        )
    return float(match.group(1)) * _UNITS[match.group(2)]


def check_statuses(statuses: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(s.strip() for s in statuses if s.strip()))
    wrong = [s for s in chosen if s not in FINISHED]
    if wrong or not chosen:
        raise RetentionError(
            f"--status {','.join(wrong) or '(empty)'}: only finished executions can be pruned; "
            f"choose among {', '.join(FINISHED)}"
        )
    return chosen


@dataclass
class PruneReport:
    """What a prune removed (or, with ``dry_run``, would remove)."""

    executions: int = 0
    events: int = 0
    messages: int = 0
    sessions: int = 0
    instances: int = 0
    instance_updates: int = 0
    output_files: int = 0
    transactions: int = 0
    longest_transaction_seconds: float = 0.0
    dry_run: bool = False
    cutoff: float = 0.0
    kept_for_relatives: int = 0
    #: PostgreSQL with partitioned events (taskloom.store.partitions): the emptied months dropped
    dropped_partitions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cutoff": self.cutoff,
            "executions": self.executions,
            "events": self.events,
            "messages": self.messages,
            "sessions": self.sessions,
            "instances": self.instances,
            "instance_updates": self.instance_updates,
            "output_files": self.output_files,
            "kept_for_relatives": self.kept_for_relatives,
            "transactions": self.transactions,
            "longest_transaction_ms": round(self.longest_transaction_seconds * 1000, 2),
            "dropped_partitions": self.dropped_partitions,
            "errors": self.errors,
        }


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


class _Pruning:
    """One prune pass over one store."""

    def __init__(
        self,
        store: Store,
        cutoff: float,
        statuses: tuple[str, ...],
        dry_run: bool,
        output_dirs: Sequence[Path],
        chunk_rows: int,
    ) -> None:
        from taskloom.store.statements import Statements

        self.sql: Statements = Statements(store)
        self.store = store
        self.cutoff = cutoff
        self.statuses = statuses
        self.output_dirs = list(output_dirs)
        self.chunk_rows = chunk_rows
        self.report = PruneReport(dry_run=dry_run, cutoff=cutoff)

    # -- one short transaction, then as long a pause ---------------------------------------------------
    def _timed(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        started = time.perf_counter()
        rows = self.sql.run_all(statements)
        took = time.perf_counter() - started
        self.report.transactions += 1
        self.report.longest_transaction_seconds = max(self.report.longest_transaction_seconds, took)
        self._checkpoint()
        time.sleep(max(took, 0.001))  # the lock is free for as long as it was held: waiting writers get in
        return rows

    def _checkpoint(self) -> None:
        """SQLite: copy the WAL back into the database after every chunk, from the pruner's connection.
        Pruning writes far more WAL than steps do; left alone, the commit that crosses the auto-checkpoint
        threshold runs the checkpoint, and that is as likely to be a running workflow's step as the
        pruner's (measured: the longest gap between a running workflow's steps while pruning 1,000,000
        events went from 54 ms with a checkpoint every 4 chunks to 35 ms with one after each)."""
        if self.sql.postgres:
            return
        self.store._conn().execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[attr-defined]

    # -- executions ----------------------------------------------------------------------------------
    def _old_with_live_relative(self, live: bool) -> tuple[str, tuple[Any, ...]]:
        """The condition (on ``executions e``) of an old execution in the chosen statuses whose parent or a
        child is still live (``live``) or not, and its parameters: prunable ones, or those kept for one."""
        finished = _marks(FINISHED)
        relative = (
            f"EXISTS (SELECT 1 FROM executions p WHERE p.id = e.parent_id AND p.status NOT IN ({finished})) "
            f"OR EXISTS (SELECT 1 FROM executions c WHERE c.parent_id = e.id AND c.status NOT IN ({finished}))"
        )
        condition = (
            f"e.status IN ({_marks(self.statuses)}) AND e.updated_at < ? AND {'' if live else 'NOT '}({relative})"
        )
        return condition, (*self.statuses, self.cutoff, *FINISHED, *FINISHED)

    def _where_prunable(self) -> tuple[str, tuple[Any, ...]]:
        return self._old_with_live_relative(live=False)

    def _candidates(self) -> list[str]:
        """A batch of prunable executions. No ORDER BY: sorting would read every candidate per batch, and
        deleted rows leave the set, so the next batch finds the next ones."""
        condition, params = self._where_prunable()
        rows = self.sql.run(f"SELECT e.id FROM executions e WHERE {condition} LIMIT ?", (*params, BATCH_EXECUTIONS))
        return [str(row[0]) for row in rows]

    def _count_kept(self) -> int:
        """Old finished executions kept because a relative is still live (reported, not pruned)."""
        condition, params = self._old_with_live_relative(live=True)
        return int(self.sql.run(f"SELECT COUNT(*) FROM executions e WHERE {condition}", params)[0][0])

    def _output_files(self, ids: list[str]) -> list[str]:
        """File names of the outputs these executions keep in a LocalFileOutputStorage."""
        if not self.output_dirs:
            return []
        from taskloom import serde
        from taskloom.outputs import FILE_REFERENCE_PREFIX

        rows = self.sql.run(
            f"SELECT ev.value FROM {self._events_of(_marks(ids))} AND ev.data LIKE ?",
            (*ids, '%"output_storage":"LocalFileOutputStorage"%'),
        )
        names = []
        for (blob,) in rows:
            try:
                reference = serde.loads(bytes(blob))
            except Exception:  # an undecodable value names no file we could safely remove
                continue
            if isinstance(reference, str) and reference.startswith(FILE_REFERENCE_PREFIX):
                name = reference[len(FILE_REFERENCE_PREFIX) :]
                if "/" not in name and not name.startswith("."):
                    names.append(name)
        return names

    def _remove_files(self, names: list[str]) -> None:
        for name in names:
            for folder in self.output_dirs:
                try:
                    (folder / name).unlink()
                    self.report.output_files += 1
                except FileNotFoundError:
                    continue
                except OSError as error:
                    self.report.errors.append(f"cannot remove output file {folder / name}: {error}")

    def _events_of(self, ids: str) -> str:
        """``FROM ... WHERE ...`` of the events (``ev``) of the executions ``ids`` (marks, or a SELECT of ids).
        SQLite's events have no index by execution: each execution's are a range of seqs of its own."""
        if self.sql.postgres:
            return f"events ev WHERE ev.execution_id IN ({ids})"
        from taskloom.store.sqlite import events_of_executions

        return events_of_executions(ids)

    def _has_events(self) -> str:
        """Whether the row ``executions`` (in a correlated subquery) still has events."""
        if self.sql.postgres:
            return "EXISTS (SELECT 1 FROM events WHERE events.execution_id = executions.id)"
        from taskloom.store.sqlite import HAS_EVENTS

        return HAS_EVENTS

    def _counts(self, chosen: str, params: tuple[Any, ...], counted: Sequence[tuple[str, str]]) -> list[int]:
        """How many rows ``chosen`` (a SELECT of ids) names, then for each ``(aggregate, rows)`` the
        ``aggregate`` (``COUNT(*)``: how many) of ``rows`` (a ``FROM ... WHERE`` of the rows that point at
        them): what a dry run reports, in one transaction."""
        rows = self.sql.run_all(
            [
                (f"SELECT COUNT(*) FROM ({chosen}) AS chosen", params),
                *((f"SELECT {aggregate} FROM {where}", params) for aggregate, where in counted),
            ]
        )
        return [int(found[0][0]) for found in rows]

    def _dry_counts(self) -> None:
        condition, params = self._where_prunable()
        chosen = f"SELECT e.id FROM executions e WHERE {condition}"
        self.report.executions, self.report.events, self.report.messages = self._counts(
            chosen,
            params,
            [(_EVENTS_IN_ROWS, self._events_of(chosen)), ("COUNT(*)", f"messages WHERE execution_id IN ({chosen})")],
        )

    def _delete_in_chunks(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run ``sql`` (a DELETE ... LIMIT ? RETURNING n, its last parameter the chunk size) until it takes
        fewer rows than a chunk, each chunk its own short transaction; how many went, each row counted as
        its n (1; an events row holding a step's start and outcome is 2 events)."""
        deleted = 0
        while True:
            (gone,) = self._timed([(sql, (*params, self.chunk_rows))])
            deleted += sum(int(row[0]) for row in gone)
            if len(gone) < self.chunk_rows:
                return deleted

    def _delete(self, ids: list[str]) -> None:
        files = self._output_files(ids)
        marks = _marks(ids)
        self.report.events += self._delete_in_chunks(  # events first: they reference the execution
            f"DELETE FROM events WHERE seq IN (SELECT ev.seq FROM {self._events_of(marks)} LIMIT ?) "
            f"RETURNING {_EVENTS_IN_ROW}",
            tuple(ids),
        )
        messages, executions = self._timed(
            [
                (f"DELETE FROM messages WHERE execution_id IN ({marks}) RETURNING 1", ids),
                (
                    f"DELETE FROM executions WHERE id IN ({marks}) AND status IN ({_marks(self.statuses)}) "
                    f"AND NOT {self._has_events()} RETURNING 1",
                    (*ids, *self.statuses),
                ),
            ]
        )
        self.report.messages += len(messages)
        self.report.executions += len(executions)
        self._remove_files(files)

    def executions(self) -> None:
        self.report.kept_for_relatives = self._count_kept()
        if self.report.dry_run:
            self._dry_counts()
            return
        while True:
            ids = self._candidates()
            if not ids:
                return
            before = self.report.executions
            self._delete(ids)
            if self.report.executions == before:  # nothing could go (a race): never loop on the same rows
                return

    # -- instance sessions ----------------------------------------------------------------------------
    def _where_old_session(self) -> tuple[str, tuple[Any, ...]]:
        condition = (
            "s.created_at < ? AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.session_id = s.id "
            "AND (i.status IN ('queued', 'running') OR COALESCE(i.finished_at, i.created_at) >= ?))"
        )
        return condition, (self.cutoff, self.cutoff)

    def _old_sessions(self) -> list[str]:
        condition, params = self._where_old_session()
        rows = self.sql.run(
            f"SELECT s.id FROM instance_sessions s WHERE {condition} LIMIT ?", (*params, BATCH_EXECUTIONS)
        )
        return [str(row[0]) for row in rows]

    def sessions(self) -> None:
        if self.report.dry_run:
            condition, params = self._where_old_session()
            chosen = f"SELECT s.id FROM instance_sessions s WHERE {condition}"
            self.report.sessions, self.report.instances, self.report.instance_updates = self._counts(
                chosen,
                params,
                [
                    ("COUNT(*)", f"instances WHERE session_id IN ({chosen})"),
                    ("COUNT(*)", f"instance_updates WHERE session_id IN ({chosen})"),
                ],
            )
            return
        while True:
            ids = self._old_sessions()
            if not ids:
                return
            marks = _marks(ids)
            self.report.instance_updates += self._delete_in_chunks(
                "DELETE FROM instance_updates WHERE (session_id, seq) IN (SELECT session_id, seq "
                f"FROM instance_updates WHERE session_id IN ({marks}) LIMIT ?) RETURNING 1",
                tuple(ids),
            )
            instances, sessions = self._timed(
                [
                    (f"DELETE FROM instances WHERE session_id IN ({marks}) RETURNING 1", ids),
                    (f"DELETE FROM instance_sessions WHERE id IN ({marks}) RETURNING 1", ids),
                ]
            )
            self.report.instances += len(instances)
            self.report.sessions += len(sessions)
            if len(ids) < BATCH_EXECUTIONS:
                return

    def leftovers(self) -> None:
        """Rows that only ever matter for a while: rate-limit starts and expired cache entries."""
        if self.report.dry_run:
            return
        self._timed([("DELETE FROM queue_starts WHERE started_at < ?", (self.cutoff,))])
        self.store.clear_cached_results(expired_at=time.time())


def prune(
    store: Store,
    older_than: float | str,
    *,
    statuses: Iterable[str] = FINISHED,
    dry_run: bool = False,
    output_dirs: Sequence[str | Path] = (),
    chunk_rows: int = CHUNK_ROWS,
    now: float | None = None,
) -> PruneReport:
    """Remove finished executions older than ``older_than`` (seconds, or an age like ``"30d"``).

    See the module's docstring for what is never touched. ``output_dirs`` are the folders of
    :class:`~taskloom.outputs.LocalFileOutputStorage` whose files are removed with their executions.
    """
    seconds = parse_age(older_than) if isinstance(older_than, str) else float(older_than)
    if seconds <= 0:
        raise RetentionError(f"older_than must be positive, got {older_than!r}")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise RetentionError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    cutoff = (time.time() if now is None else now) - seconds
    run = _Pruning(
        store, cutoff, check_statuses(statuses), dry_run, [Path(d).absolute() for d in output_dirs], chunk_rows
    )
    run.executions()
    run.sessions()
    run.leftovers()
    if not dry_run:
        from taskloom.store.partitions import maintain_partitions

        run.report.dropped_partitions = maintain_partitions(store, drop_before=cutoff).dropped
    return run.report


def output_dirs_of(tasks: Iterable[Any]) -> list[Path]:
    """The folders of the LocalFileOutputStorage used by ``tasks`` (task objects, or workflows' steps)."""
    from taskloom.outputs import LocalFileOutputStorage

    folders: dict[Path, None] = {}
    for task in tasks:
        storage = getattr(getattr(task, "options", None), "output_storage", None)
        if isinstance(storage, LocalFileOutputStorage):
            folders[storage.directory] = None
    return list(folders)


class Pruner:
    """A worker's background pruning: every :data:`PRUNE_EVERY_SECONDS`, remove what ``retention`` allows."""

    def __init__(self, store: Store, retention: float, output_dirs: Sequence[Path] = ()) -> None:
        self.store = store
        self.retention = retention
        self.output_dirs = list(output_dirs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="taskloom-pruner", daemon=True)

    def start(self) -> Pruner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = prune(self.store, self.retention, output_dirs=self.output_dirs)
                if report.executions or report.sessions:
                    log.info("retention: pruned %s", report.as_dict())
            except TaskloomError as error:  # the store is down: try again next time
                log.warning("retention: prune failed: %s", error)
            self._stop.wait(PRUNE_EVERY_SECONDS)
