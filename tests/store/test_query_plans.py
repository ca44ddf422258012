"""Every query behind listing, filtering, status, events, the dashboard's pages and a worker's claim uses an
index, on both stores: the plans of the statements the store really sends, not of statements written here.

SQLite: a trace callback records each statement (with its values bound) on the store's own connection,
and ``EXPLAIN QUERY PLAN`` of each must not read ``executions`` or ``events`` whole (a ``SCAN`` without
an index). PostgreSQL: ``auto_explain`` (loaded into the store's sessions) sends each statement's plan back
as a notice, with sequential scans disabled, so a plan that still reads ``executions`` or ``events`` with
a ``Seq Scan`` has no index it could use. That a store with 1,000,000 executions answers these in about
the time of the bare indexed query is measured by ``benchmarks/bench_history.py``.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskloom.events import EventType, NewEvent
from taskloom.presence import live_workers
from taskloom.retention import prune
from taskloom.store.base import Store
from taskloom.store.sqlite import SQLiteStore
from taskloom.store.statements import Statements

#: the tables that grow without bound: a full read of either is what must never happen
BIG_TABLES = ("executions", "events", "messages")
WORKFLOW = "plans.flow"


#: executions (of another workflow, with events) that no query here should read: a plan that reads them
#: and throws them away has no index for its filter
FILLER = 300


def fill(store: Store) -> None:
    """A few executions in every state, with events and a message: every query has something to find."""
    for n in range(FILLER):
        store.create_execution(f"filler-{n:04}", "plans.other", None, "completed", "plans:other")
        store.append_events(f"filler-{n:04}", [NewEvent(EventType.STEP_STARTED, step_id=str(k)) for k in range(3)])
    for n, status in enumerate(["queued", "running", "paused", "completed", "failed", "completed"]):
        store.create_execution(f"e{n}", WORKFLOW, None, status, f"plans:{WORKFLOW}")
        store.append_events(f"e{n}", [NewEvent(EventType.STEP_STARTED, step_id="1", name="step")])


def operations(store: Store) -> dict[str, Callable[[], Any]]:
    """What `taskloom list/status/events`, the dashboard's pages and a worker ask of the store."""
    return {
        "list": lambda: store.list_executions(limit=50),
        "list by status": lambda: store.list_executions(status="completed", limit=50),
        "list by workflow": lambda: store.list_executions(workflow=WORKFLOW, limit=50),
        "list by workflow and status": lambda: store.list_executions(workflow=WORKFLOW, status="failed", limit=50),
        "list, next page": lambda: store.list_executions(limit=50, after=(time.time(), "e3")),
        "list by id prefix": lambda: store.list_executions(id_prefix="e", limit=50),
        "status": lambda: store.get_execution("e3"),
        "events": lambda: store.load_events("e3"),
        "events after a seq": lambda: store.load_events("e3", after_seq=1),
        "messages": lambda: store.list_messages("e2"),
        "queues": lambda: store.list_queues(),
        "schedules": lambda: store.list_schedules(),
        "workers": lambda: live_workers(store),
        "claim": lambda: store.claim_next_execution("plan-worker", 10, [WORKFLOW]),
        "prune": lambda: prune(store, 3600.0),
    }


# -- SQLite -------------------------------------------------------------------------------------------
def sqlite_full_scans(path: Path, statements: list[str]) -> list[str]:
    found = []
    with sqlite3.connect(path) as conn:
        for sql in statements:
            if not re.match(r"\s*(SELECT|UPDATE|DELETE|WITH)\b", sql, re.IGNORECASE):
                continue
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
                detail = str(row[-1])
                # A table read whole, or a range of its rowid (messages.seq): both read rows of every
                # execution. An ordered index scan (``SCAN t USING INDEX``) stops at the LIMIT. SQLite's
                # events are the exception: an execution's events are a range of seqs of its own (bounded
                # on both sides), which is how they are read.
                scanned = re.match(
                    r"(?:SCAN (\w+)(?: AS \w+)?$|SEARCH (\w+)(?: AS \w+)? USING INTEGER PRIMARY KEY \(rowid[<>])",
                    detail,
                )
                table = _table_of(scanned.group(1) or scanned.group(2), sql) if scanned else None
                one_execution = table == "events" and re.search(r"\(rowid>\? AND rowid<\?\)$", detail)
                if table in BIG_TABLES and not one_execution:
                    found.append(f"{detail}  <=  {sql}")
    return found


def _table_of(name: str, sql: str) -> str:
    """The table an alias in ``sql`` stands for (``FROM executions e`` -> ``executions``)."""
    if name in BIG_TABLES:
        return name
    aliased = re.search(rf"\b(\w+)\s+(?:AS\s+)?{re.escape(name)}\b", sql, re.IGNORECASE)
    return aliased.group(1) if aliased else name


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'plans.db'}")
    fill(store)
    yield store
    store.close()


@pytest.mark.parametrize("name", list(operations(None)))  # type: ignore[arg-type]
def test_sqlite_reads_no_big_table_whole(sqlite_store: SQLiteStore, tmp_path: Path, name: str) -> None:
    call = operations(sqlite_store)[name]
    statements: list[str] = []
    sqlite_store._conn().set_trace_callback(statements.append)
    try:
        call()
    finally:
        sqlite_store._conn().set_trace_callback(None)
    assert statements, f"{name}: no statement seen"
    scans = sqlite_full_scans(tmp_path / "plans.db", statements)
    assert not scans, f"{name} reads a table whole:\n" + "\n".join(scans)


# -- PostgreSQL ---------------------------------------------------------------------------------------
def re_reads_others_events(plan: str) -> bool:
    """A scan of events or messages that read (and dropped) the filler's rows: an index for the wrong
    column (``events_pkey`` for ``seq > ?``). On executions, the planner may rightly prefer walking the
    ``created_at`` index of a table this small and filtering; the benchmark measures that at 1,000,000."""
    nodes = re.split(r"\n\s*->", plan)
    return any(
        re.search(r" on (events|messages)\b", node)
        and any(int(n) >= FILLER for n in re.findall(r"Rows Removed by Filter: (\d+)", node))
        for node in nodes
    )


@pytest.mark.postgres
def test_postgres_reads_no_big_table_whole(pg_fresh_url: str) -> None:
    from taskloom.store.postgres import PostgresStore

    plans: list[str] = []

    store = PostgresStore(pg_fresh_url)
    opened = store._open_connection

    def explained(*, autocommit: bool) -> Any:
        """The store's own connection; its session only also sends each statement's plan back as a notice."""
        conn = opened(autocommit=autocommit)
        autocommit_before = conn.autocommit
        conn.autocommit = True
        conn.execute("LOAD 'auto_explain'")
        for setting in (
            "auto_explain.log_min_duration = 0",
            "auto_explain.log_analyze = on",  # "Rows Removed by Filter": rows read and thrown away
            "auto_explain.log_timing = off",
            "auto_explain.log_nested_statements = on",
            "client_min_messages = log",
            "enable_seqscan = off",
        ):
            conn.execute(f"SET {setting}")
        conn.autocommit = autocommit_before
        conn.add_notice_handler(lambda notice: plans.append(str(notice.message_primary)))
        return conn

    store._open_connection = explained  # type: ignore[method-assign]
    store._discard_idle()  # the connections of the migrations: opened before, without the plans
    try:
        fill(store)
        Statements(store).run("ANALYZE")  # the statistics autovacuum keeps on a live store
        for name, call in operations(store).items():
            plans.clear()
            call()
            seen = [plan for plan in plans if "Query Text" in plan]
            assert seen, f"{name}: no plan seen"
            scans = [
                plan
                for plan in seen
                if re.search(rf"Seq Scan on ({'|'.join(BIG_TABLES)})\b", plan) or re_reads_others_events(plan)
            ]
            assert not scans, f"{name} reads a table whole:\n" + "\n\n".join(scans)
    finally:
        store.close()
