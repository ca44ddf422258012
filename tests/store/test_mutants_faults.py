"""How store faults are read and waited out (``taskloom/store/faults.py``), beyond what the fault suite
pins down (issue 14, mutation testing).

The classifiers get the drivers' own exceptions: errors SQLite really raised (a held lock, a read-only
file, a file that is not a database, a folder where the file should be) and psycopg's exception classes
for each SQLSTATE, built the way psycopg builds them from a server's answer, so no PostgreSQL server is
needed to check every rule. The exact sentence of each rule is checked: it is what the user reads.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest
from processes import wait_for
from sqlite_locks import lock_held as write_lock_held
from sqlite_locks import release

from taskloom.errors import ExecutionStateError, StoreError, StoreUnavailableError
from taskloom.events import EventType, NewEvent
from taskloom.store import ExecutionStatus
from taskloom.store.faults import Fault, classify_postgres, classify_sqlite
from taskloom.store.sqlite import SQLiteStore

ADVICE = (
    "if the database was edited by hand or restored from a damaged copy, restore a good backup; "
    "otherwise report this message as a taskloom bug"
)


# -- PostgreSQL ------------------------------------------------------------------------------------------


def pg_error(sqlstate: str, message: str = "the server said no") -> psycopg.Error:
    """psycopg's exception for ``sqlstate``, as it raises it for a server error with that code."""
    error: psycopg.Error = psycopg.errors.lookup(sqlstate)(message)
    return error


def test_a_postgres_server_whose_disk_is_full_is_permanent_and_says_to_free_space() -> None:
    assert classify_postgres(pg_error("53100", "could not extend file\n")) == Fault(
        False, "the database server's disk is full (could not extend file): free space on it, then run again"
    )


def test_a_read_only_postgres_server_is_permanent_and_says_to_use_the_primary() -> None:
    assert classify_postgres(pg_error("25006", "cannot execute INSERT in a read-only transaction")) == Fault(
        False,
        "the database is read-only (cannot execute INSERT in a read-only transaction): "
        "point TASKLOOM_DATABASE_URL at the primary",
    )


@pytest.mark.parametrize(
    ("sqlstate", "name"),
    [
        ("57P01", "AdminShutdown"),
        ("57P02", "CrashShutdown"),
        ("57P03", "CannotConnectNow"),
        ("53300", "TooManyConnections"),
        ("40001", "SerializationFailure"),
        ("40P01", "DeadlockDetected"),
        ("40003", "StatementCompletionUnknown"),
        ("08000", "ConnectionException"),
        ("08006", "ConnectionFailure"),
        ("08001", "SqlclientUnableToEstablishSqlconnection"),
    ],
)
def test_postgres_shutdowns_lost_connections_and_lost_races_are_transient(sqlstate: str, name: str) -> None:
    assert classify_postgres(pg_error(sqlstate, " terminating connection\n")) == Fault(
        True, f"{name}: terminating connection"
    )


@pytest.mark.parametrize(
    "words",
    [
        'password authentication failed for user "taskloom"',
        'database "nope" does not exist',
        'no pg_hba.conf entry for host "10.0.0.1"',
        "Permission Denied for database taskloom",
    ],
)
@pytest.mark.parametrize("kind", [psycopg.OperationalError, psycopg.InterfaceError])
def test_a_connection_refused_for_a_reason_waiting_does_not_cure_is_permanent(
    kind: type[psycopg.Error], words: str
) -> None:
    assert classify_postgres(kind(f"connection failed: {words}")) == Fault(
        False, f"cannot connect (connection failed: {words}): check TASKLOOM_DATABASE_URL"
    )


@pytest.mark.parametrize("kind", [psycopg.OperationalError, psycopg.InterfaceError])
def test_a_connection_that_failed_without_a_sqlstate_is_transient(kind: type[psycopg.Error]) -> None:
    assert classify_postgres(kind("connection refused\n")) == Fault(
        True, "connection lost or refused: connection refused"
    )


def test_a_driver_error_without_a_sqlstate_that_is_not_about_the_connection_is_unexpected() -> None:
    assert classify_postgres(psycopg.DataError("cannot dump lists of mixed types")) == Fault(
        False, f"unexpected DataError: cannot dump lists of mixed types; {ADVICE}"
    )


def test_any_other_postgres_error_is_unexpected_and_permanent_naming_its_class() -> None:
    assert classify_postgres(pg_error("42P01", 'relation "secrets" does not exist')) == Fault(
        False, f'unexpected UndefinedTable: relation "secrets" does not exist; {ADVICE}'
    )


# -- SQLite: errors SQLite really raised -----------------------------------------------------------------


def raised_by(action: object) -> sqlite3.Error:
    """The sqlite3 error that calling ``action`` raises."""
    with pytest.raises(sqlite3.Error) as raised:
        action()  # type: ignore[operator]
    return raised.value


def test_a_real_held_lock_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (a)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    error = raised_by(lambda: other.execute("BEGIN IMMEDIATE"))
    holder.close()
    other.close()

    assert error.sqlite_errorcode == 5  # SQLITE_BUSY
    assert classify_sqlite(error, str(path)) == Fault(
        True, "database is locked: another process holds its write lock past the busy timeout"
    )


def test_a_real_write_to_a_read_only_database_is_permanent_and_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    sqlite3.connect(path).execute("CREATE TABLE t (a)").connection.close()
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    error = raised_by(lambda: reader.execute("INSERT INTO t VALUES (1)"))
    reader.close()

    assert error.sqlite_errorcode & 0xFF == 8  # SQLITE_READONLY
    assert classify_sqlite(error, str(path)) == Fault(
        False,
        "it cannot be written (attempt to write a readonly database): give this process write permission "
        "on the file and its folder (SQLite writes -wal and -shm files beside it), or mount the filesystem "
        "read-write",
    )


def test_a_real_file_that_is_not_a_database_is_damaged_with_the_integrity_check_to_run(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(b"definitely not sqlite " * 100)
    db = sqlite3.connect(path)
    error = raised_by(lambda: db.execute("SELECT * FROM sqlite_master"))
    db.close()

    assert error.sqlite_errorcode == 26  # SQLITE_NOTADB
    assert classify_sqlite(error, "/data/t.db") == Fault(
        False,
        "the database is damaged (file is not a database): restore it from a backup; "
        "`sqlite3 /data/t.db 'PRAGMA integrity_check'` shows what is wrong",
    )


def test_a_real_file_that_cannot_be_opened_says_to_check_its_folder(tmp_path: Path) -> None:
    error = raised_by(lambda: sqlite3.connect(tmp_path))  # a folder, not a file

    assert error.sqlite_errorcode == 14  # SQLITE_CANTOPEN
    assert classify_sqlite(error, str(tmp_path)) == Fault(
        False, "it cannot be opened (unable to open database file): check that its folder exists and is writable"
    )


def test_any_other_real_sqlite_error_is_unexpected_and_permanent(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "t.db")
    error = raised_by(lambda: db.execute("SELECT * FROM secrets"))
    db.close()

    assert classify_sqlite(error, "t.db") == Fault(
        False, f"unexpected OperationalError: no such table: secrets; {ADVICE}"
    )


# -- SQLite: the codes and the words, each on its own ----------------------------------------------------


def coded(code: int, message: str = "something went wrong") -> sqlite3.Error:
    """A sqlite3 error carrying ``code``, as the sqlite3 module raises it (it sets ``sqlite_errorcode``)."""
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize("code", [5, 6, 5 | (1 << 8), 6 | (1 << 8), 5 | (2 << 8)])
def test_busy_and_locked_codes_and_their_extended_codes_are_transient(code: int) -> None:
    assert classify_sqlite(coded(code), "t.db").transient is True


@pytest.mark.parametrize("message", ["database is locked", "Database Is Locked", "database table is busy"])
def test_a_lock_is_recognised_by_its_words_when_there_is_no_code(message: str) -> None:
    assert classify_sqlite(sqlite3.OperationalError(message), "t.db") == Fault(
        True, f"{message}: another process holds its write lock past the busy timeout"
    )


@pytest.mark.parametrize(
    ("error", "start"),
    [
        (coded(13), "the disk is full (something went wrong): free space on its filesystem, then run again"),
        (coded(13 | (1 << 8)), "the disk is full ("),
        (sqlite3.OperationalError("database or Disk Is Full"), "the disk is full (database or Disk Is Full)"),
        (coded(8), "it cannot be written (something went wrong)"),
        (coded(8 | (3 << 8)), "it cannot be written ("),
        (sqlite3.OperationalError("attempt to write a READONLY DATABASE"), "it cannot be written ("),
        (coded(11), "the database is damaged (something went wrong)"),
        (coded(11 | (1 << 8)), "the database is damaged ("),
        (coded(26), "the database is damaged ("),
        (sqlite3.DatabaseError("database disk image is MALFORMED"), "the database is damaged ("),
        (sqlite3.DatabaseError("file is Not A Database"), "the database is damaged ("),
        (coded(14), "it cannot be opened (something went wrong): check that its folder exists and is writable"),
        (coded(14 | (1 << 8)), "it cannot be opened ("),
        (coded(10), "a disk I/O error (something went wrong): check the disk and the filesystem's free space"),
        (coded(10 | (3 << 8)), "a disk I/O error ("),
    ],
)
def test_each_permanent_sqlite_fault_is_told_by_its_code_or_its_words(error: sqlite3.Error, start: str) -> None:
    fault = classify_sqlite(error, "t.db")

    assert fault.transient is False
    assert fault.message.startswith(start), fault.message


@pytest.mark.parametrize("code", [1, 7, 19, 21, 23, 0x1FF])
def test_other_sqlite_codes_are_unexpected(code: int) -> None:
    assert classify_sqlite(coded(code), "t.db") == Fault(
        False, f"unexpected OperationalError: something went wrong; {ADVICE}"
    )


def test_an_error_with_a_code_that_is_not_a_number_is_read_by_its_words() -> None:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = "busy"  # type: ignore[assignment]

    assert classify_sqlite(error, "t.db").transient is True
    assert classify_sqlite(sqlite3.OperationalError("no such table: x"), "t.db").message.startswith("unexpected")


# -- the retry loop, told by its logs, on a real held lock ----------------------------------------------

LOCKED = "database is locked: another process holds its write lock past the busy timeout"


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "taskloom.store"]


def test_an_outage_is_logged_with_its_cause_and_budget_each_attempt_numbered_and_its_end_timed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "taskloom.db"
    store = SQLiteStore(f"sqlite:///{path}", busy_timeout=0.0, retry_seconds=60.0)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    where = f"the SQLite store {str(path)!r}"
    caplog.set_level(logging.DEBUG, logger="taskloom.store")
    result: list[object] = []
    started = time.monotonic()

    with write_lock_held(path) as holder:
        step = NewEvent(EventType.STEP_COMPLETED, step_id="1", name="task", value=b"ok")
        writer = threading.Thread(target=lambda: result.append(store.append_events("exec-1", [step])))
        writer.start()
        wait_for(lambda: any("attempt 3 of" in m for m in messages(caplog)), timeout=30, what="three failed attempts")
        release(holder)
        writer.join(timeout=60)
    elapsed = time.monotonic() - started

    logged = messages(caplog)
    assert len(result) == 1 and isinstance(result[0], int), result
    assert logged[0] == f"{where} is unavailable ({LOCKED}); retrying for up to 60 s (TASKLOOM_STORE_RETRY_SECONDS)"
    attempts = [m for m in logged if " attempt " in m]
    assert attempts[:3] == [f"{where}: attempt {n} of append_events failed ({LOCKED}); retrying" for n in (1, 2, 3)]
    (back,) = [m for m in logged if "available again" in m]
    prefix = f"{where} is available again after "
    assert back.startswith(prefix) and back.endswith(" s")
    assert 0.0 <= float(back[len(prefix) : -2]) <= elapsed + 0.1  # the outage's length, not a clock reading
    assert not [m for m in logged if "cleaning up" in m]  # dropping connections before a retry did not fail
    store.close()


_CHANGE_UNDER_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute(sys.argv[2])
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


@contextlib.contextmanager
def changed_under_lock(path: Path, statement: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the write lock while it runs ``statement``, committed on release."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _CHANGE_UNDER_LOCK, str(path), statement],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        release(holder)


def retried_call(
    store: SQLiteStore, holder: subprocess.Popen[str], caplog: pytest.LogCaptureFixture, call: Any
) -> BaseException | object:
    """Run ``call`` in a thread until it has met the lock twice, release the lock; what it returned or raised."""
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # returned to the test
            outcome.append(error)

    caller = threading.Thread(target=run)
    caller.start()
    wait_for(lambda: any("attempt 2 of" in m for m in messages(caplog)), timeout=30, what="two failed attempts")
    release(holder)
    caller.join(timeout=60)
    assert not caller.is_alive() and len(outcome) == 1
    return outcome[0]


def test_a_status_changed_while_a_write_waited_for_the_lock_is_the_state_error_not_a_store_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "taskloom.db"
    store = SQLiteStore(f"sqlite:///{path}", busy_timeout=0.0, retry_seconds=60.0)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.PAUSED)
    caplog.set_level(logging.DEBUG, logger="taskloom.store")

    with changed_under_lock(path, "UPDATE executions SET status = 'cancelled' WHERE id = 'exec-1'") as holder:
        outcome = retried_call(
            store,
            holder,
            caplog,
            lambda: store.append_events(
                "exec-1", [], status=ExecutionStatus.QUEUED, expected_status=ExecutionStatus.PAUSED
            ),
        )

    assert type(outcome) is ExecutionStateError, outcome
    assert "is cancelled, not paused" in str(outcome)
    record = store.get_execution("exec-1")
    assert record is not None and record.status == ExecutionStatus.CANCELLED  # nothing was written
    store.close()


def test_a_permanent_fault_met_while_retrying_is_a_store_error_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "taskloom.db"
    store = SQLiteStore(f"sqlite:///{path}", busy_timeout=0.0, retry_seconds=60.0)
    store.put_secret("API_KEY", b"v1")
    caplog.set_level(logging.DEBUG, logger="taskloom.store")

    with changed_under_lock(path, "DROP TABLE secrets") as holder:  # a schema edited by hand meanwhile
        outcome = retried_call(store, holder, caplog, lambda: store.put_secret("API_KEY", b"v2"))

    assert type(outcome) is StoreError, outcome  # not retried until the 60 s budget is spent
    assert str(outcome) == (
        f"the SQLite store {str(path)!r}: unexpected OperationalError: no such table: secrets; {ADVICE}"
    )
    assert isinstance(outcome.__cause__, sqlite3.OperationalError)
    store.close()


def test_retries_back_off_from_the_first_delay_doubling_neither_hammering_nor_dawdling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # FIRST_DELAY 0.05 s doubling, each pause between half and all of its delay: the first five pauses
    # take at most 0.05 + 0.1 + 0.2 + 0.4 + 0.8 = 1.55 s and at least half that, so a 3 s budget sees
    # six to nine attempts fail before it is spent. Pauses that do not grow would make dozens.
    path = tmp_path / "taskloom.db"
    store = SQLiteStore(f"sqlite:///{path}", busy_timeout=0.0, retry_seconds=3.0)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    caplog.set_level(logging.DEBUG, logger="taskloom.store")

    with write_lock_held(path), pytest.raises(StoreUnavailableError):
        store.append_events("exec-1", [NewEvent(EventType.STEP_COMPLETED, step_id="1", name="t", value=b"")])

    attempts = [m for m in messages(caplog) if " attempt " in m]
    assert 6 <= len(attempts) <= 12, attempts
    store.close()
