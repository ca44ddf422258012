"""The PostgreSQL store against a real server, where its contract and fault suites left mutants alive
(issue 14, mutation testing of ``taskloom/store/postgres.py``): passwords holding ``:`` or ``@`` in
messages, the LISTEN connection's waits (during an outage, after a failed LISTEN, cut mid-wait, woken by one
notification), a store used on both sides of a fork, and the connect timeout against a server that never
answers.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any

import psycopg
import pytest
from pgserver import PostgresServer
from processes import wait_for

from taskloom.errors import StoreError
from taskloom.events import EventType, NewEvent
from taskloom.store import ExecutionStatus, postgres
from taskloom.store.postgres import RELISTEN_DELAY, ChannelListener, PostgresStore, redacted


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:pa:ss@db.example/taskloom", "postgresql://app:***@db.example/taskloom"),
        ("postgresql://app:p@ss@db.example:5433/taskloom", "postgresql://app:***@db.example:5433/taskloom"),
        (
            "postgresql://app:a:b@c@db.example/taskloom?sslmode=require",
            "postgresql://app:***@db.example/taskloom?sslmode=require",
        ),
    ],
)
def test_a_password_holding_a_colon_or_an_at_sign_is_hidden_whole(url: str, shown: str) -> None:
    assert redacted(url) == shown


def backends(pg_server: PostgresServer, url: str) -> int:
    """How many server connections are open on the schema of ``url`` (its application_name)."""
    application = url.rsplit("application_name=", 1)[1]
    with pg_server.admin_connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,)
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.postgres
def test_event_data_is_stored_as_compact_json(pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
        store.append_events("exec-1", [NewEvent(EventType.STEP_LOG, step_id="s1", data={"message": "hi", "n": [1, 2]})])
        with psycopg.connect(pg_fresh_url) as conn:
            rows = conn.execute("SELECT data FROM events WHERE execution_id = 'exec-1' AND data IS NOT NULL").fetchall()
        assert rows == [('{"message":"hi","n":[1,2]}',)]  # no spaces: every event row is read back by replays
    finally:
        store.close()


# -- waiting for work --------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_during_an_outage_a_wait_pauses_before_answering_but_never_past_its_timeout(
    pg_server: PostgresServer, pg_fresh_url: str
) -> None:
    store = PostgresStore(pg_fresh_url)
    pg_server.shut_down()
    try:
        started = time.monotonic()
        assert store.wait_for_work(0.0) is False
        assert time.monotonic() - started < 0.8 * RELISTEN_DELAY  # no time left to pause: no pause

        started = time.monotonic()
        assert store.wait_for_work(10.0) is False
        waited = time.monotonic() - started
        # It pauses (RELISTEN_DELAY) rather than letting its caller retry in a tight loop, and no longer
        # than that: the caller's own store calls then meet the outage.
        assert 0.9 * RELISTEN_DELAY <= waited < 5.0
    finally:
        pg_server.start_again()
        store.close()


@pytest.mark.postgres
def test_a_listen_that_fails_answers_false_and_closes_its_connection(
    pg_server: PostgresServer, pg_fresh_url: str
) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        assert backends(pg_server, pg_fresh_url) == 1  # the pooled connection of the migration
        listener = ChannelListener(store._connect_autocommit, "not a channel name")  # LISTEN: a syntax error

        assert listener.wait(0.0) is False  # no wake-up promised by a connection that listens to nothing
        assert listener.wait(0.0) is False  # and it tries again, failing the same way

        wait_for(lambda: backends(pg_server, pg_fresh_url) == 1, timeout=30, what="the failed connections closed")
        listener.close()
    finally:
        store.close()


@pytest.mark.postgres
def test_a_wait_with_nothing_queued_ends_after_its_own_timeout(pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        assert store.wait_for_work(0.0) is True  # listening now: look first

        started = time.monotonic()
        assert store.wait_for_work(0.05) is False
        assert time.monotonic() - started < 0.8  # its 0.05 s, generous for a slow machine
    finally:
        store.close()


@pytest.mark.postgres
def test_one_notification_wakes_the_waiter_at_once(pg_fresh_url: str) -> None:
    store, other = PostgresStore(pg_fresh_url), PostgresStore(pg_fresh_url)
    try:
        assert store.wait_for_work(0.0) is True
        other.create_execution("exec-1", "flow", None, ExecutionStatus.QUEUED)  # one NOTIFY

        started = time.monotonic()
        assert store.wait_for_work(6.0) is True
        # At once: not after waiting for a second notification, nor for more while draining the burst
        # (the notification is already there; 0.9 s is generous for a slow machine).
        assert time.monotonic() - started < 0.9
        assert store.wait_for_work(0.0) is False
    finally:
        store.close()
        other.close()


@pytest.mark.postgres
def test_a_listen_connection_cut_during_a_wait_answers_true_and_listens_again(
    pg_server: PostgresServer, pg_fresh_url: str
) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        assert store.wait_for_work(0.0) is True
        assert pg_server.terminate_connections() >= 1

        started = time.monotonic()
        assert store.wait_for_work(6.0) is True  # work may have been queued while it was not listening
        assert time.monotonic() - started < 3.0
        assert store.wait_for_work(0.0) is True  # listening again, so: look first
        assert store.wait_for_work(0.0) is False
    finally:
        store.close()


# -- a store used on both sides of a fork ------------------------------------------------------------------


def _in_the_child(store: PostgresStore) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    try:
        seen["first wait"] = store.wait_for_work(0.0)  # a LISTEN connection of its own: look first
        seen["second wait"] = store.wait_for_work(0.0)  # nothing queued since
        store.create_execution("from-child", "flow", None, ExecutionStatus.QUEUED)
        store.create_execution("from-child-2", "flow", None, ExecutionStatus.RUNNING)
        seen["reads"] = [
            getattr(store.get_execution(name), "status", None) for name in ("from-parent", "from-child", "from-child-2")
        ]
        seen["pooled"] = store._current_pool().get_stats()["pool_available"]
        store.close()
    except BaseException as error:  # reported to the parent, which fails the test
        seen["error"] = repr(error)
    return seen


@pytest.mark.postgres
def test_a_forked_child_uses_connections_of_its_own_and_leaves_the_parents_working(pg_fresh_url: str) -> None:
    store = PostgresStore(pg_fresh_url)
    try:
        store.create_execution("from-parent", "flow", None, ExecutionStatus.RUNNING)  # a pooled connection
        assert store.wait_for_work(0.0) is True  # and a LISTEN connection, both inherited by the child
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            try:
                os.close(read_end)
                os.write(write_end, json.dumps(_in_the_child(store)).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            seen = json.loads(reader.read() or b"{}")
        _, status = os.waitpid(pid, 0)

        assert os.waitstatus_to_exitcode(status) == 0
        assert seen == {
            "first wait": True,
            "second wait": False,
            "reads": ["running", "queued", "running"],
            "pooled": 1,  # the child pools its own connection (and reuses it)
        }
        # The parent's pooled and LISTEN connections were neither used nor closed by the child.
        assert store.wait_for_work(5.0) is True  # the child's queued execution was heard
        assert store.get_execution("from-child") is not None
    finally:
        store.close()


@pytest.mark.postgres
def test_a_store_that_finds_itself_in_another_process_starts_afresh_and_leaves_the_old_connections_open(
    pg_server: PostgresServer, pg_fresh_url: str
) -> None:
    """The fork above, seen from inside one process (mutmut records which functions a test reaches only in
    the test's own process, and the child's _after_fork runs in another): a store whose recorded process id
    is not this one's behaves as a forked child's."""
    store = PostgresStore(pg_fresh_url)
    try:
        store.create_execution("exec-1", "flow", None, ExecutionStatus.QUEUED)
        assert store.wait_for_work(0.0) is True
        assert backends(pg_server, pg_fresh_url) == 2  # one pooled, one LISTEN
        store._pid = -1  # as in a forked child: the store was set up by another process

        assert store.wait_for_work(0.0) is True  # a LISTEN connection of its own: look first
        assert store.wait_for_work(0.0) is False  # and it keeps that one
        for _ in range(3):
            assert store.get_execution("exec-1") is not None
        assert store._pid == os.getpid()
        # The inherited pooled and LISTEN connections stay open and unused, beside one new of each.
        assert backends(pg_server, pg_fresh_url) == 4
    finally:
        store.close()
        for conn in store._inherited:  # kept open by the store on purpose; this test is their only owner
            if isinstance(conn, psycopg.Connection):
                conn.close()


# -- connecting ----------------------------------------------------------------------------------------------


def test_a_server_that_never_answers_fails_the_connection_after_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres, "CONNECT_TIMEOUT_SECONDS", 2)  # libpq's smallest
    outcome: list[BaseException | PostgresStore] = []
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"postgresql://app:s3cret@127.0.0.1:{silent.getsockname()[1]}/taskloom"

        def open_store() -> None:
            try:
                outcome.append(PostgresStore(url, retry_seconds=0.0))
            except BaseException as error:
                outcome.append(error)

        opener = threading.Thread(target=open_store, daemon=True)
        opener.start()
        opener.join(timeout=20)  # the 2 s asked for, generous for a slow machine
        assert not opener.is_alive(), "the connection attempt did not time out"

    [error] = outcome
    assert isinstance(error, StoreError)
    assert "timeout" in str(error) and "s3cret" not in str(error)
