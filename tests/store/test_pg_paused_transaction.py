"""A process paused inside a transaction (SIGSTOP, a frozen VM) must not strand an execution.

Claims skip locked rows (FOR UPDATE SKIP LOCKED), so a session that sits in a transaction holding an
execution's row lock would hide that execution from every worker for as long as its process stays
paused, its lease long expired. The store's sessions set ``idle_in_transaction_session_timeout``, so
the server ends such a session and frees the row.
"""

from __future__ import annotations

import psycopg
import pytest
from processes import wait_for

from taskloom.executions import queue_execution
from taskloom.store import postgres
from taskloom.store.faults import classify_postgres
from taskloom.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


def test_a_session_paused_inside_a_transaction_loses_its_row_locks(
    pg_fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "IDLE_IN_TRANSACTION_SECONDS", 1.0)
    paused_process = PostgresStore(pg_fresh_url)
    execution = queue_execution(paused_process, "flow", "app:flow", 1)
    paused = paused_process._connect()  # as a store connection is made, then "paused" mid-transaction
    paused.execute("SELECT id FROM executions WHERE id = %s FOR UPDATE", (execution,))
    worker = PostgresStore(pg_fresh_url)
    try:
        assert worker.claim_next_execution("w2", 10.0, ["flow"]) is None  # the locked row is skipped
        claimed = wait_for(lambda: worker.claim_next_execution("w2", 10.0, ["flow"]), timeout=20, what="the claim")
        assert claimed.id == execution
        with pytest.raises(psycopg.Error) as ended:  # the server ended the paused session
            paused.execute("SELECT 1")
        # and when the paused process wakes, its store retries the call on a new connection (fenced by
        # its lease like any write), instead of reporting a store failure
        assert ended.value.sqlstate == "25P03" and classify_postgres(ended.value).transient
    finally:
        paused.close()
        worker.close()
        paused_process.close()


def test_the_timeout_is_set_on_every_connection_the_store_opens(pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        for conn in (store._connect(), store._connect_autocommit()):
            with conn:
                shown = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()
                assert shown is not None and shown[0] == f"{int(postgres.IDLE_IN_TRANSACTION_SECONDS)}s"
                assert conn.autocommit is (conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE)
    finally:
        store.close()
