"""The PostgreSQL store's connection pool (psycopg_pool's, issue 12) against a real server.

The pool's connections are opened by the store itself (the session's idle-in-transaction timeout set on
each), and the first contact's connection is the pool's first. After its connections are cut, the store
meets the fault once: the call that meets it reconnects directly and renews the pool, so no later call
takes a dead connection from it.
"""

from __future__ import annotations

import logging
import threading

import pytest
from pgserver import PostgresServer

from taskloom.store import ExecutionStatus
from taskloom.store.postgres import PostgresStore

pytestmark = pytest.mark.postgres


def test_every_pooled_connection_carries_the_idle_in_transaction_timeout(pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        with store._read() as first, store._transaction() as second:  # two pooled connections at once
            assert first is not second
            for conn in (first, second):
                assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("10s",)
    finally:
        store.close()


def test_the_first_contacts_connection_is_the_pools_first(pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        migrated = store._spare
        with store._read() as conn:
            assert conn is migrated
        assert store._spare is None
    finally:
        store.close()


def test_after_its_connections_are_cut_the_store_meets_the_fault_once(
    pg_server: PostgresServer, pg_fresh_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(pg_fresh_url, retry_seconds=30.0)
    caplog.set_level(logging.WARNING, logger="taskloom.store")
    try:
        store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
        inside = threading.Barrier(4)

        def hold_one() -> None:  # four threads inside at once: four pooled connections
            with store._read() as conn:
                conn.execute("SELECT 1")
                inside.wait(timeout=30)

        threads = [threading.Thread(target=hold_one) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        old_pool = store._pool
        assert old_pool is not None and old_pool.get_stats()["pool_available"] == 4
        assert pg_server.terminate_connections() >= 4

        for _ in range(8):  # one thread: it would take each dead pooled connection in turn
            assert store.get_execution("exec-1") is not None

        met = [r for r in caplog.records if "is unavailable" in r.getMessage()]
        assert len(met) == 1, [r.getMessage() for r in met]
        assert store._pool is not old_pool and old_pool.closed
    finally:
        store.close()
