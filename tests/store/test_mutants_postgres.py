"""The PostgreSQL store's own rules that need no server (issue 14, mutation testing): how its URL is
redacted in every message, and how its fault policy reads an error before the shared retry loop acts.

The store's behaviour against a real server is in the contract and fault suites (``[postgres]``).
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
import psycopg.errors
import pytest
from pgserver import PostgresServer
from processes import wait_for

from taskloom.errors import StoreError
from taskloom.store import ExecutionStatus
from taskloom.store.faults import Fault
from taskloom.store.postgres import MAX_IDLE_CONNECTIONS, PostgresFaults, PostgresStore, redacted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://taskloom:s3cret@db.example:5432/app", "postgresql://taskloom:***@db.example:5432/app"),
        (
            "postgresql://taskloom:s3cret@db.example/app?sslmode=require",
            "postgresql://taskloom:***@db.example/app?sslmode=require",
        ),
        ("postgresql://:s3cret@db.example/app", "postgresql://:***@db.example/app"),
        (
            "postgresql://taskloom:s3cret@/app?host=/run/postgresql",
            "postgresql://taskloom:***@/app?host=/run/postgresql",
        ),
        ("postgres://taskloom:@db.example:6432/app", "postgres://taskloom:***@db.example:6432/app"),
    ],
)
def test_a_password_in_the_url_is_never_shown(url: str, shown: str) -> None:
    assert redacted(url) == shown


@pytest.mark.parametrize(
    "url", ["postgresql://taskloom@db.example:5432/app", "postgresql://db.example/app", "postgresql:///app"]
)
def test_a_url_without_a_password_is_shown_as_it_is(url: str) -> None:
    assert redacted(url) == url


def test_the_fault_policy_names_the_store_by_its_redacted_url_and_keeps_the_budget() -> None:
    policy = PostgresFaults("postgresql://u:pw@h:5432/d", 12.5, lambda: None)

    assert policy.where == "the PostgreSQL store postgresql://u:***@h:5432/d"
    assert policy.retry_seconds == 12.5
    assert policy.faults == (psycopg.Error, OSError, PostgresFaults.faults[2])


def test_a_socket_error_is_a_lost_connection_worth_waiting_out() -> None:
    policy = PostgresFaults("postgresql://h/d", 1.0, lambda: None)

    assert policy.classify(ConnectionResetError(104, "Connection reset by peer")) == Fault(
        True, "connection lost: [Errno 104] Connection reset by peer"
    )


def test_a_driver_error_is_read_by_the_postgres_rules() -> None:
    policy = PostgresFaults("postgresql://h/d", 1.0, lambda: None)

    assert policy.classify(psycopg.errors.lookup("53100")("no space")) == Fault(
        False, "the database server's disk is full (no space): free space on it, then run again"
    )
    assert policy.classify(psycopg.errors.lookup("57P01")("bye")) == Fault(True, "AdminShutdown: bye")


def test_before_each_retry_the_policy_drops_what_the_store_asked_it_to() -> None:
    dropped: list[str] = []
    policy = PostgresFaults("postgresql://h/d", 1.0, lambda: dropped.append("idle connections"))

    policy.on_transient(psycopg.OperationalError("connection lost"))
    policy.on_transient(OSError("reset"))

    assert dropped == ["idle connections", "idle connections"]


def test_an_ipv6_host_keeps_its_brackets_when_the_password_is_hidden() -> None:
    assert redacted("postgresql://u:s3cret@[::1]:5432/app") == "postgresql://u:***@[::1]:5432/app"


# -- the connection pool, counted on a real server -------------------------------------------------------


def backends(pg_server: PostgresServer, url: str) -> int:
    """How many server connections the store at ``url`` has open (its schema's application_name)."""
    application = url.rsplit("application_name=", 1)[1]
    with pg_server.admin_connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgres
def test_one_threads_calls_reuse_one_pooled_connection(pg_server: PostgresServer, pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
        for _ in range(20):
            assert store.get_execution("exec-1") is not None

        assert backends(pg_server, pg_fresh_url) == 1
    finally:
        store.close()


@pytest.mark.postgres
def test_close_ends_the_idle_connections_and_the_store_reconnects(pg_server: PostgresServer, pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    store.wait_for_work(0.0)  # the LISTEN connection too

    store.close()

    wait_for(lambda: backends(pg_server, pg_fresh_url) == 0, timeout=30, what="the server to see them closed")
    assert store.get_execution("exec-1") is not None
    store.close()


@pytest.mark.postgres
def test_at_most_the_idle_limit_of_connections_is_kept_after_a_busy_moment(
    pg_server: PostgresServer, pg_fresh_url: str
) -> None:
    store = PostgresStore(pg_fresh_url)
    busy = MAX_IDLE_CONNECTIONS + 4
    inside = threading.Barrier(busy + 1)
    leave = threading.Event()

    def hold_a_connection() -> None:
        with store._transaction() as conn:
            conn.execute("SELECT 1")
            inside.wait(timeout=30)
            leave.wait(timeout=30)

    threads = [threading.Thread(target=hold_a_connection) for _ in range(busy)]
    try:
        for thread in threads:
            thread.start()
        inside.wait(timeout=30)
        assert backends(pg_server, pg_fresh_url) == busy
        leave.set()
        for thread in threads:
            thread.join(timeout=30)

        wait_for(lambda: backends(pg_server, pg_fresh_url) == MAX_IDLE_CONNECTIONS, timeout=30, what="the extra closed")
    finally:
        leave.set()
        store.close()


@pytest.mark.postgres
def test_a_database_that_does_not_exist_is_a_store_error_at_once_saying_what_to_check(
    pg_server: PostgresServer,
) -> None:
    url = pg_server.url("no_such_database").replace("postgres@", "postgres:s3cret@")

    with pytest.raises(StoreError) as raised:
        PostgresStore(url, retry_seconds=30.0)

    message = str(raised.value)
    assert type(raised.value) is StoreError and "s3cret" not in message
    assert message.startswith(f"cannot connect to the PostgreSQL store {redacted(url)}: cannot connect (")
    assert 'database "no_such_database" does not exist' in message
    assert message.endswith("): check TASKLOOM_DATABASE_URL")


def hold_connections(store: PostgresStore, count: int) -> None:
    """Leave ``count`` idle connections in the store's pool: ``count`` threads inside it at once."""
    inside = threading.Barrier(count + 1)
    leave = threading.Event()

    def hold() -> None:
        with store._transaction() as conn:
            conn.execute("SELECT 1")
            inside.wait(timeout=30)
            leave.wait(timeout=30)

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for thread in threads:
        thread.start()
    inside.wait(timeout=30)
    leave.set()
    for thread in threads:
        thread.join(timeout=30)


@pytest.mark.postgres
def test_one_failed_attempt_drops_the_whole_pool_its_cut_connections_were_in(
    pg_server: PostgresServer, pg_fresh_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(pg_fresh_url, retry_seconds=30.0)
    try:
        store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
        hold_connections(store, 4)
        assert backends(pg_server, pg_fresh_url) == 4
        assert pg_server.terminate_connections() >= 4
        caplog.set_level(logging.DEBUG, logger="taskloom.store")

        assert store.get_execution("exec-1") is not None

        logged = [r.getMessage() for r in caplog.records if r.name == "taskloom.store"]
        attempts = [m for m in logged if " attempt " in m]
        assert len(attempts) == 1, logged  # not one failed attempt per dead pooled connection
        assert not [m for m in logged if "cleaning up" in m]
    finally:
        store.close()


@pytest.mark.postgres
def test_waiting_for_work_while_the_server_is_down_answers_false_within_its_timeout(
    pg_server: PostgresServer, pg_fresh_url: str
) -> None:
    store = PostgresStore(pg_fresh_url)
    pg_server.shut_down()
    try:
        started = time.monotonic()
        assert store.wait_for_work(0.2) is False  # the caller's next store call meets the outage
        assert time.monotonic() - started < 5.0  # the 0.2 s asked for, generous for a slow machine
    finally:
        pg_server.start_again()
        store.close()
    assert store.wait_for_work(0.0) is True  # listening again: look before waiting


@pytest.mark.postgres
def test_a_second_waiter_gives_up_after_its_own_timeout_while_the_first_waits(pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        assert store.wait_for_work(0.0) is True  # the first call listens and says: look first
        first = threading.Thread(target=store.wait_for_work, args=(30.0,))
        first.start()
        wait_for(lambda: store._work_listener._lock.locked(), timeout=30, what="the first waiter to wait")

        started = time.monotonic()
        assert store.wait_for_work(0.05) is False
        assert time.monotonic() - started < 0.9  # its 0.05 s, generous for a slow machine

        store.create_execution("exec-1", "flow", None, ExecutionStatus.QUEUED)  # wakes the first waiter
        first.join(timeout=30)
        assert not first.is_alive()
    finally:
        store.close()
