"""Store faults on real stores: a held write lock, a full disk, a read-only file, a damaged file, records
this taskloom cannot read, and PostgreSQL connections cut or a server restarted under a live store.

Every fault is real (another process, a tmpfs filled up, an immutable file, garbled bytes, the server's
own ``pg_terminate_backend`` and restart): the store must answer with StoreUnavailableError or StoreError
naming the store and what to do, never a raw driver exception, and work again once the fault is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pgserver import PostgresServer
from processes import free_port, wait_for
from sqlite_locks import lock_held as write_lock_held
from sqlite_locks import release

from taskloom.errors import ExecutionNotFoundError, StoreError, StoreUnavailableError
from taskloom.events import EventType, NewEvent
from taskloom.store import ExecutionStatus, Store, open_store
from taskloom.store.postgres import PostgresStore
from taskloom.store.sqlite import SQLiteStore

LOGGER = "taskloom.store"


def run_sql(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement straight on the store's database (``?`` placeholders), outside any Store."""
    if url.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
    db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def step(step_id: str, value: bytes = b"ok") -> NewEvent:
    return NewEvent(EventType.STEP_COMPLETED, step_id=step_id, name="task", value=value)


def sqlite_store(path: Path, *, busy_timeout: float = 0.05, retry_seconds: float = 30.0) -> SQLiteStore:
    return SQLiteStore(f"sqlite:///{path}", busy_timeout=busy_timeout, retry_seconds=retry_seconds)


def step_ids(store: Store, execution_id: str) -> list[str | None]:
    return [event.step_id for event in store.load_events(execution_id)]


# -- SQLite: another process holds the write lock ----------------------------------------------------


def test_a_write_lock_held_past_the_retry_budget_is_store_unavailable_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "taskloom.db"
    store = sqlite_store(path, busy_timeout=0.05, retry_seconds=0.5)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    started = time.monotonic()

    with write_lock_held(path), pytest.raises(StoreUnavailableError) as raised:
        store.append_events("exec-1", [step("1")])

    message = str(raised.value)
    assert str(path) in message and "database is locked" in message and "0.5 s" in message
    assert time.monotonic() - started < 0.5 + 10  # the budget, plus a generous allowance for a slow machine
    assert step_ids(store, "exec-1") == [None]  # nothing was written
    outage = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage) == 1 and str(path) in outage[0].getMessage()


def test_a_write_lock_released_within_the_budget_lets_the_write_land_and_logs_the_outage_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "taskloom.db"
    store = sqlite_store(path, busy_timeout=0.05, retry_seconds=60.0)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    results: dict[str, Any] = {}

    def write(name: str) -> None:
        try:
            results[name] = store.append_events("exec-1", [step(name)])
        except BaseException as error:  # reported below
            results[name] = error

    with write_lock_held(path) as holder:
        writers = [threading.Thread(target=write, args=(name,)) for name in ("a", "b")]
        for writer in writers:
            writer.start()

        def retried_enough() -> bool:  # both writers met the lock several times: one outage, many attempts
            attempts = [r for r in caplog.records if "attempt 3 of append_events" in r.getMessage()]
            return len(attempts) >= 2

        wait_for(retried_enough, timeout=30, what="both writers to retry three times")
        release(holder)
        for writer in writers:
            writer.join(timeout=60)

    assert all(isinstance(results[name], int) for name in ("a", "b")), results
    assert sorted(str(s) for s in step_ids(store, "exec-1")[1:]) == ["a", "b"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([m for m in warnings if "is unavailable" in m]) == 1  # once per outage, not per call
    assert len([m for m in warnings if "available again" in m]) == 1


def test_each_outage_is_logged_even_after_one_that_ran_out_of_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "taskloom.db"
    store = sqlite_store(path, busy_timeout=0.01, retry_seconds=0.2)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    caplog.set_level(logging.WARNING, logger=LOGGER)

    for _ in range(2):
        with write_lock_held(path), pytest.raises(StoreUnavailableError):
            store.append_events("exec-1", [step("1")])
        store.append_events("exec-1", [step("2")])  # between outages, a call that succeeds at once

    assert len([r for r in caplog.records if "is unavailable" in r.getMessage()]) == 2


def test_with_no_retry_budget_a_held_lock_fails_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "taskloom.db"
    store = sqlite_store(path, busy_timeout=0.0, retry_seconds=0.0)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    with write_lock_held(path), pytest.raises(StoreUnavailableError, match="database is locked"):
        store.create_execution("exec-2", "flow", None, ExecutionStatus.QUEUED)

    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    assert store.get_execution("exec-2") is None


def test_open_store_takes_busy_timeout_and_retry_budget_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKLOOM_SQLITE_BUSY_TIMEOUT", "0.25")
    monkeypatch.setenv("TASKLOOM_STORE_RETRY_SECONDS", "0")
    path = tmp_path / "taskloom.db"
    store = open_store(f"sqlite:///{path}")
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)

    assert isinstance(store, SQLiteStore) and store.busy_timeout == 0.25
    with write_lock_held(path), pytest.raises(StoreUnavailableError, match=r"for 0 s"):
        store.append_events("exec-1", [step("1")])
    store.close()


def test_a_bad_busy_timeout_in_the_environment_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKLOOM_SQLITE_BUSY_TIMEOUT", "soon")

    with pytest.raises(Exception, match="TASKLOOM_SQLITE_BUSY_TIMEOUT"):
        open_store(f"sqlite:///{tmp_path / 'taskloom.db'}")


# -- SQLite: a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a filesystem that really fills up. Needs mount rights (root in the test container)."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(folder: Path) -> Path:
    """Write a file in ``folder`` until its filesystem has no space left; returns the file."""
    filler = folder / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_is_a_store_error_naming_the_file_and_the_store_works_once_space_is_freed(
    small_disk: Path,
) -> None:
    path = small_disk / "taskloom.db"
    store = sqlite_store(path)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    filler = fill(small_disk)

    with pytest.raises(StoreError) as raised:
        store.append_events("exec-1", [step("1", value=b"x" * 300_000)], status=ExecutionStatus.COMPLETED)

    message = str(raised.value)
    assert not isinstance(raised.value, StoreUnavailableError)  # waiting does not free space
    assert str(path) in message and "full" in message and "free space" in message
    filler.unlink()
    store.append_events("exec-1", [step("1", value=b"x" * 300_000)], status=ExecutionStatus.COMPLETED)
    record = store.get_execution("exec-1")
    assert record is not None and record.status == ExecutionStatus.COMPLETED
    assert step_ids(store, "exec-1") == [None, "1"]  # the failed write left nothing behind
    store.close()


# -- SQLite: a read-only file, a damaged file ----------------------------------------------------------


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable even for root (the immutable flag), or by mode for anyone else."""
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot make the file immutable here: {made.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=False)
    else:
        path.chmod(0o400)
        try:
            yield
        finally:
            path.chmod(0o600)


def test_a_read_only_file_is_a_store_error_naming_the_file_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    writer = sqlite_store(path)
    writer.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    writer.close()  # the last connection checkpoints: the data is in the file itself

    with read_only(path):
        store = sqlite_store(path)
        record = store.get_execution("exec-1")  # reading still works
        with pytest.raises(StoreError) as raised:
            store.append_events("exec-1", [step("1")], status=ExecutionStatus.COMPLETED)
        store.close()

    message = str(raised.value)
    assert not isinstance(raised.value, StoreUnavailableError)
    assert record is not None and record.status == ExecutionStatus.RUNNING
    assert str(path) in message and "readonly" in message and "permission" in message


def _damaged_copy(tmp_path: Path, garble: slice) -> Path:
    path = tmp_path / "taskloom.db"
    store = sqlite_store(path)
    for n in range(200):  # enough rows for the tables to span several pages
        store.create_execution(f"exec-{n}", "flow", b"x" * 200, ExecutionStatus.RUNNING)
    store.close()
    data = bytearray(path.read_bytes())
    data[garble] = bytes(range(256)) * ((garble.stop - garble.start) // 256)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("where", "garble"),
    [("header", slice(0, 512)), ("pages", slice(4096, 4096 * 12))],
)
def test_a_garbled_file_is_a_store_error_naming_the_file_and_integrity_check(
    tmp_path: Path, where: str, garble: slice
) -> None:
    path = _damaged_copy(tmp_path, garble)

    with pytest.raises(StoreError) as raised:
        store = sqlite_store(path)
        try:
            store.list_executions(limit=1000)
            for n in range(200):
                store.load_events(f"exec-{n}")
        finally:
            store.close()

    message = str(raised.value)
    assert not isinstance(raised.value, StoreUnavailableError)
    assert str(path) in message and "damaged" in message and "integrity_check" in message


def test_a_new_store_file_and_its_folder_are_private_to_their_owner(tmp_path: Path) -> None:
    path = tmp_path / "home" / ".taskloom" / "taskloom.db"

    store = sqlite_store(path)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)

    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for written in (path, path.with_name("taskloom.db-wal")):
        assert stat.S_IMODE(written.stat().st_mode) == 0o600, written
    store.close()


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)

    sqlite_store(folder / "taskloom.db").close()

    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "taskloom.db").stat().st_mode) == 0o600


def test_a_folder_that_cannot_be_created_is_a_store_error_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")

    with pytest.raises(StoreError, match=str(blocker / "taskloom.db")):
        sqlite_store(blocker / "taskloom.db")


# -- records this taskloom cannot read (both stores) ---------------------------------------------------


def test_an_event_type_from_a_newer_taskloom_is_a_store_error_saying_upgrade(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    run_sql(
        store.url,
        "INSERT INTO events (execution_id, type, ts) VALUES (?, ?, ?)",
        ("exec-1", "step_teleported", time.time()),
    )

    with pytest.raises(StoreError) as raised:
        store.load_events("exec-1")

    message = str(raised.value)
    assert "step_teleported" in message and "newer taskloom" in message and "exec-1" in message
    assert ("PostgreSQL store" in message) or (store.url.removeprefix("sqlite:///") in message)


def test_event_data_that_is_not_json_is_a_store_error_naming_the_event(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    run_sql(
        store.url,
        "INSERT INTO events (execution_id, type, step_id, data, ts) VALUES (?, ?, ?, ?, ?)",
        ("exec-1", "step_log", "1", "{not json", time.time()),
    )

    with pytest.raises(StoreError, match=r"exec-1: event \d+ \(step_log\) is damaged.*backup"):
        store.load_events("exec-1")
    assert store.get_execution("exec-1") is not None  # the store stays usable


def test_a_missing_schema_version_row_is_refused_rather_than_migrated_again(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    run_sql(store.url, "DELETE FROM schema_version")

    with pytest.raises(StoreError, match="no schema version") as raised:
        open_store(store.url).close()

    assert "backup" in str(raised.value)
    assert len(run_sql(store.url, "SELECT id FROM executions")) == 1  # nothing was touched


def test_an_unexpected_driver_error_is_a_store_error_never_the_drivers_own(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    run_sql(store.url, "DROP TABLE secrets")  # a schema edited by hand

    with pytest.raises(StoreError) as raised:
        store.put_secret("API_KEY", b"ciphertext")

    message = str(raised.value)
    assert type(raised.value) is StoreError and "unexpected" in message and "secrets" in message
    assert "backup" in message and "bug" in message
    assert store.get_execution("exec-1") is not None  # the store stays usable for the rest


def test_domain_errors_pass_through_the_fault_handling_unchanged(store: Store) -> None:
    with pytest.raises(ExecutionNotFoundError):
        store.append_events("nope", [step("1")], expected_status=ExecutionStatus.RUNNING)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    with pytest.raises(TypeError):  # a caller's unserialisable data is the caller's error, not the store's
        store.append_events("exec-1", [NewEvent(EventType.STEP_LOG, data={"bad": object()})])


# -- PostgreSQL: connections cut, server restarted -----------------------------------------------------


@pytest.mark.postgres
def test_postgres_calls_survive_their_connections_being_terminated(
    pg_server: PostgresServer, pg_fresh_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(pg_fresh_url, retry_seconds=30.0)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    try:
        store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
        # several pooled connections, all idle when they are cut
        threads = [threading.Thread(target=store.get_execution, args=("exec-1",)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert pg_server.terminate_connections() >= 1

        store.append_events("exec-1", [step("1")], status=ExecutionStatus.COMPLETED)
        record = store.get_execution("exec-1")
        assert record is not None and record.status == ExecutionStatus.COMPLETED
        assert step_ids(store, "exec-1") == [None, "1"]  # written once
        assert [r for r in caplog.records if "is unavailable" in r.getMessage()]  # it met the cut and retried
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("cut", ["terminated", "restarted"])
def test_postgres_wait_for_work_listens_again_after_its_connection_is_cut(
    pg_server: PostgresServer, pg_fresh_url: str, cut: str
) -> None:
    store, other = PostgresStore(pg_fresh_url), PostgresStore(pg_fresh_url)
    try:
        store.wait_for_work(0.01)  # opens the LISTEN connection
        if cut == "terminated":
            pg_server.terminate_connections()
        else:
            pg_server.restart()

        # The cut is noticed (a spurious True is allowed), then the store listens again and a
        # notification from another store wakes it.
        wait_for(lambda: store.wait_for_work(0.05) is False, timeout=30, what="a quiet LISTEN connection")
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(store.wait_for_work(30.0)))
        waiter.start()
        wait_for(lambda: _listening(pg_server, pg_fresh_url), timeout=30, what="LISTEN again")
        other.create_execution("exec-1", "flow", None, ExecutionStatus.QUEUED)
        waiter.join(timeout=30)
        assert woke == [True]
    finally:
        store.close()
        other.close()


def _listening(pg_server: PostgresServer, url: str) -> bool:
    """Whether a connection of ``url``'s schema sits in LISTEN (its last statement), i.e. waits for work."""
    application = url.rsplit("application_name=", 1)[1]
    with pg_server.admin_connection() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query ILIKE 'LISTEN%%'",
            (application,),
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.postgres
def test_postgres_calls_made_while_the_server_restarts_wait_for_it_and_succeed(
    pg_server: PostgresServer, pg_fresh_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = PostgresStore(pg_fresh_url, retry_seconds=60.0)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    try:
        store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
        restarter = threading.Thread(target=pg_server.restart)
        restarter.start()
        wrote = 0
        while restarter.is_alive():  # keep writing through the whole restart, one step at a time
            wrote += 1
            store.append_events("exec-1", [step(str(wrote))])
        restarter.join()
        store.append_events("exec-1", [step("last")], status=ExecutionStatus.COMPLETED)

        record = store.get_execution("exec-1")
        assert record is not None and record.status == ExecutionStatus.COMPLETED
        recorded = step_ids(store, "exec-1")
        # Every write landed (a write cut during its COMMIT may land twice: replay tolerates that).
        assert set(recorded) == {None, "last", *(str(n) for n in range(1, wrote + 1))}
        assert [r for r in caplog.records if "is unavailable" in r.getMessage()]  # it met the restart
    finally:
        store.close()


@pytest.mark.postgres
def test_a_postgres_store_never_reached_is_a_store_error_at_once_naming_the_redacted_url() -> None:
    url = f"postgresql://taskloom:s3cret@127.0.0.1:{free_port()}/taskloom"  # nothing listens there

    started = time.monotonic()
    with pytest.raises(StoreError) as raised:
        PostgresStore(url, retry_seconds=30)
    assert time.monotonic() - started < 15  # not the 30 s retry budget: a wrong address is said at once

    message = str(raised.value)
    assert not isinstance(raised.value, StoreUnavailableError)
    assert "s3cret" not in message and "taskloom:***@127.0.0.1" in message
    assert "refused" in message.lower()


def test_a_full_disk_under_the_instance_queue_reports_the_full_disk_not_a_failed_rollback(
    small_disk: Path,
) -> None:
    from taskloom.store.instances import instance_queue_for

    store = sqlite_store(small_disk / "taskloom.db")
    queue = instance_queue_for(store)
    queue.register_worker("w-0", ["app:small"])
    filler = fill(small_disk)
    with pytest.raises(Exception) as raised:
        queue.register_worker("w-1", [f"app:task_{n}_{'x' * 1000}" for n in range(5000)])
    assert "full" in str(raised.value) and "rollback" not in str(raised.value), repr(raised.value)
    filler.unlink()
    queue.register_worker("w-1", ["app:after"])  # the store works again once space is freed
    assert {worker for worker, _, _ in queue.seen_workers(60.0)} == {"w-0", "w-1"}
    store.close()
