"""The SQLite store's own behaviour that the contract suite does not pin down (issue 14, mutation testing).

Each test names a behaviour of ``taskloom/store/sqlite.py`` that a mutant changed without any other test
noticing: how a URL names the file, one connection per thread (and all of them closed by ``close``), the
busy timeout as SQLite sees it, waiting for another process that holds the lock of a file not yet in WAL
mode, a folder created by another process at the same moment, and the exact words of its errors.
Everything is real: files, folders, other processes holding SQLite locks.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from processes import wait_for
from sqlite_locks import lock_held, release

from taskloom.errors import ExecutionStateError, LeaseLostError, StoreError, StoreUnavailableError
from taskloom.events import EventType, NewEvent
from taskloom.store import ExecutionStatus
from taskloom.store.migrations import load_migrations
from taskloom.store.sqlite import SQLiteStore, path_from_url


def sqlite_store(path: Path | str, *, busy_timeout: float = 0.05, retry_seconds: float = 30.0) -> SQLiteStore:
    return SQLiteStore(f"sqlite:///{path}", busy_timeout=busy_timeout, retry_seconds=retry_seconds)


def open_files(path: Path) -> int:
    """How many file descriptors of this process point at the store file or its -wal and -shm files."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith(str(path)):
                count += 1
    return count


# -- the file a URL names ----------------------------------------------------------------------------


def test_every_form_of_sqlite_url_names_the_file_it_spells() -> None:
    assert path_from_url("sqlite:///data/taskloom.db") == Path("data/taskloom.db")
    assert path_from_url("sqlite:////var/lib/taskloom.db") == Path("/var/lib/taskloom.db")
    assert path_from_url("sqlite://data/taskloom.db") == Path("data/taskloom.db")
    assert path_from_url("data/taskloom.db") == Path("data/taskloom.db")
    assert path_from_url("/var/lib/taskloom.db") == Path("/var/lib/taskloom.db")


def test_a_bare_path_opens_a_store_in_that_file(tmp_path: Path) -> None:
    path = tmp_path / "bare.db"
    store = SQLiteStore(str(path), busy_timeout=0.05, retry_seconds=0)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    store.close()

    reopened = sqlite_store(path)
    assert reopened.get_execution("exec-1") is not None
    reopened.close()


def test_an_in_memory_store_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    store = SQLiteStore("sqlite:///:memory:", busy_timeout=0.05, retry_seconds=0)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)

    record = store.get_execution("exec-1")
    assert record is not None and record.status == ExecutionStatus.RUNNING
    assert sorted(os.listdir(tmp_path)) == []  # not even an empty ":memory:" file in the working directory
    store.close()


# -- connections -------------------------------------------------------------------------------------


def test_a_thread_keeps_using_the_one_connection_it_opened(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    store = sqlite_store(path)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    after_first_calls = open_files(path)

    for n in range(30):
        assert store.get_execution("exec-1") is not None
        store.append_events("exec-1", [NewEvent(EventType.STEP_COMPLETED, step_id=str(n), name="t", value=b"")])

    assert after_first_calls >= 1
    assert open_files(path) == after_first_calls  # no new connection (and no new file handles) per call
    store.close()


def test_close_also_closes_the_connections_other_threads_opened(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    store = sqlite_store(path)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    found: list[object] = []
    readers = [threading.Thread(target=lambda: found.append(store.get_execution("exec-1"))) for _ in range(3)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=30)
    assert len(found) == 3 and all(record is not None for record in found)
    assert open_files(path) >= 4  # this thread's connection and the three readers'

    store.close()

    assert open_files(path) == 0
    assert not path.with_name("taskloom.db-wal").exists()  # the last connection closed checkpoints the WAL


def test_the_busy_timeout_reaches_sqlite_in_milliseconds(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "taskloom.db", busy_timeout=2.0)

    (milliseconds,) = store._conn().execute("PRAGMA busy_timeout").fetchone()

    assert milliseconds == 2000
    store.close()


def test_wait_for_work_with_no_time_left_returns_at_once(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "taskloom.db")
    started = time.monotonic()

    assert store.wait_for_work(-5.0) is False
    assert store.wait_for_work(0.0) is False

    assert time.monotonic() - started < 0.9  # configured: no wait at all; generous for a slow machine
    store.close()


# -- a file that cannot be opened or created ---------------------------------------------------------


def test_a_folder_where_the_file_should_be_is_a_store_error_saying_it_cannot_be_opened(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    path.mkdir()

    with pytest.raises(StoreError) as raised:
        sqlite_store(path, retry_seconds=1.0)

    assert type(raised.value) is StoreError
    assert str(raised.value) == (
        f"the SQLite store {str(path)!r}: it cannot be opened (unable to open database file): "
        "check that its folder exists and is writable"
    )


def test_a_file_where_the_folder_should_be_is_a_store_error_saying_what_to_check(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    path = blocker / "taskloom.db"

    with pytest.raises(StoreError) as raised:
        sqlite_store(path, retry_seconds=1.0)

    assert type(raised.value) is StoreError  # at once: waiting does not turn a file into a folder
    assert str(raised.value) == (
        f"the SQLite store {str(path)!r}: Not a directory: check that its folder can be created and written"
    )


def test_a_file_that_is_not_a_database_is_a_store_error_with_the_integrity_check_for_that_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "taskloom.db"
    path.write_bytes(b"not a database at all " * 500)

    with pytest.raises(StoreError) as raised:
        sqlite_store(path, retry_seconds=1.0)

    message = str(raised.value)
    assert type(raised.value) is StoreError
    assert message.startswith(f"the SQLite store {str(path)!r}: the database is damaged (file is not a database)")
    assert f"`sqlite3 {path} 'PRAGMA integrity_check'` shows what is wrong" in message


@contextlib.contextmanager
def mkdir_by_another_process(folder: Path) -> Iterator[None]:
    """While active, the store's own mkdir of ``folder`` finds it just created by another process.

    An audit hook (hooks stay for the life of the process, so this one disarms itself) runs ``mkdir`` in
    a child process right before Python's ``os.mkdir`` of that folder: the race of two processes creating
    the same new store, with the other one winning, every time.
    """
    armed = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "os.mkdir" and armed[0] and os.fspath(args[0]) == str(folder):
            armed[0] = False
            subprocess.run(["mkdir", "-p", str(folder)], check=True)

    sys.addaudithook(hook)
    try:
        yield
    finally:
        armed[0] = False


def test_a_folder_another_process_creates_at_the_same_moment_is_used(tmp_path: Path) -> None:
    folder = tmp_path / "home" / ".taskloom"
    path = folder / "taskloom.db"

    with mkdir_by_another_process(folder):
        store = sqlite_store(path, retry_seconds=1.0)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)

    assert folder.is_dir() and store.get_execution("exec-1") is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.close()


def test_a_store_path_that_is_a_dangling_symlink_gets_a_private_file(tmp_path: Path) -> None:
    target = tmp_path / "data" / "taskloom.db"
    target.parent.mkdir()
    link = tmp_path / "taskloom.db"
    link.symlink_to(target)
    previous = os.umask(0o022)
    try:
        store = sqlite_store(link, retry_seconds=1.0)
        store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
        store.close()
    finally:
        os.umask(previous)

    assert stat.S_IMODE(target.stat().st_mode) == 0o600


# -- another process holds the lock of a file that is not in WAL mode yet ----------------------------

_HOLD_RESERVED = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO notes VALUES (1)")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


def rollback_journal_file(path: Path) -> Path:
    """A SQLite file in the default rollback-journal mode (made by another tool), with no taskloom tables."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE notes (n INTEGER)")
    db.close()
    return path


def reserved_lock_held(path: Path) -> contextlib.AbstractContextManager[subprocess.Popen[str]]:
    """Another process writing to ``path`` (a RESERVED lock) until its stdin gets a line: SQLite then
    refuses to switch the file to WAL mode at once, without calling the busy handler."""
    return lock_held(path, _HOLD_RESERVED)


def open_in_thread(path: Path, busy_timeout: float, polled: threading.Event) -> tuple[threading.Thread, list[Any]]:
    """Open a store on ``path`` in a thread; ``polled`` is set once the opener sleeps to poll a lock."""
    result: list[Any] = []

    def watch(frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call" and arg is time.sleep:
            polled.set()

    def run() -> None:
        sys.setprofile(watch)
        try:
            result.append(sqlite_store(path, busy_timeout=busy_timeout, retry_seconds=0.0))
        except BaseException as error:  # reported by the test
            result.append(error)
        finally:
            sys.setprofile(None)

    opener = threading.Thread(target=run)
    opener.start()
    return opener, result


def test_opening_a_file_whose_lock_another_process_holds_waits_for_it_within_the_busy_timeout(
    tmp_path: Path,
) -> None:
    path = rollback_journal_file(tmp_path / "taskloom.db")
    polled = threading.Event()

    with reserved_lock_held(path) as holder:
        opener, result = open_in_thread(path, 30.0, polled)  # no retry budget: only the busy timeout waits
        wait_for(lambda: polled.is_set() or not opener.is_alive(), timeout=30, what="the opener to meet the lock")
        release(holder)
        opener.join(timeout=30)

    assert not opener.is_alive() and len(result) == 1
    store = result[0]
    assert isinstance(store, SQLiteStore), store
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    assert store._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_opening_a_file_whose_lock_is_held_past_the_busy_timeout_is_store_unavailable(tmp_path: Path) -> None:
    path = rollback_journal_file(tmp_path / "taskloom.db")
    polled = threading.Event()

    with reserved_lock_held(path):
        opener, result = open_in_thread(path, 0.3, polled)
        opener.join(timeout=20)  # the busy timeout, and a generous allowance for a slow machine
        assert not opener.is_alive(), "the opener still waits for the lock after its busy timeout"

    (error,) = result
    assert isinstance(error, StoreUnavailableError), error  # a lock is transient: a later call may succeed
    message = str(error)
    assert message.startswith(f"the SQLite store {str(path)!r} stayed unavailable for 0 s")
    assert "database is locked" in message and "another process holds its write lock" in message
    assert polled.is_set()  # it polled the lock before giving up


# -- the words of its errors -------------------------------------------------------------------------


def test_a_write_fenced_by_a_lease_nobody_holds_says_so_and_that_nothing_was_written(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "taskloom.db")
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)

    with pytest.raises(LeaseLostError) as raised:
        store.append_events("exec-1", [NewEvent(EventType.STEP_STARTED, step_id="1")], lease_owner="w1")

    assert str(raised.value) == (
        "execution exec-1: worker w1 no longer holds its lease (now nobody); nothing was written"
    )
    store.close()


def test_a_status_that_changed_under_a_write_says_both_and_that_nothing_was_written(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "taskloom.db")
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)

    with pytest.raises(ExecutionStateError) as raised:
        store.append_events("exec-1", [], status=ExecutionStatus.RUNNING, expected_status=ExecutionStatus.PAUSED)

    assert str(raised.value) == (
        "execution exec-1 is running, not paused: its state changed under this operation; nothing was written"
    )
    store.close()


def test_a_store_from_a_newer_taskloom_is_refused_naming_the_file_and_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    sqlite_store(path).close()
    latest = load_migrations("sqlite")[-1][0]
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO schema_version (version) VALUES (?)", (latest + 1,))
    db.close()

    with pytest.raises(StoreError) as raised:
        sqlite_store(path)

    assert str(raised.value) == (
        f"the store {str(path)!r} has schema version {latest + 1}, newer than this taskloom knows ({latest}); "
        "upgrade taskloom"
    )


def test_a_store_without_its_schema_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    sqlite_store(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DELETE FROM schema_version")
    db.close()

    with pytest.raises(StoreError) as raised:
        sqlite_store(path)

    assert str(raised.value) == (
        f"the store {str(path)!r} has taskloom tables but no schema version: it is damaged or was edited by "
        "hand; restore it from a backup (taskloom will not migrate it blind)"
    )


# -- a failed write: ROLLBACK, and a connection whose ROLLBACK fails ---------------------------------


def test_a_write_refused_inside_its_transaction_rolls_back_and_keeps_the_connection(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "taskloom.db")
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    conn = store._conn()

    with pytest.raises(ExecutionStateError, match="already exists"):
        store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)

    assert store._conn() is conn and not conn.in_transaction  # rolled back, not thrown away
    store.close()


def every_rollback_fails(conn: sqlite3.Connection) -> None:
    """Make every ROLLBACK on ``conn`` fail with its transaction still open, as an I/O fault can.

    The trace callback sees each statement as it starts; the progress handler then interrupts it."""
    rolling_back = [False]
    conn.set_trace_callback(lambda sql: rolling_back.__setitem__(0, sql.upper().startswith("ROLLBACK")))
    conn.set_progress_handler(lambda: 1 if rolling_back[0] else 0, 1)


def test_a_connection_whose_rollback_fails_is_closed_and_the_thread_opens_a_fresh_one(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    store = sqlite_store(path)
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    broken = store._conn()
    every_rollback_fails(broken)

    with pytest.raises(ExecutionStateError, match="already exists"):  # the write's own error, unchanged
        store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)

    with pytest.raises(sqlite3.ProgrammingError):  # closed, which rolled its transaction back
        broken.execute("SELECT 1")
    other = sqlite_store(path, busy_timeout=0.05, retry_seconds=0.0)
    other.create_execution("exec-2", "flow", None, ExecutionStatus.RUNNING)  # the write lock is free
    other.close()
    store.create_execution("exec-3", "flow", None, ExecutionStatus.RUNNING)  # this thread has a new one
    assert store._conn() is not broken
    assert sorted(r.id for r in store.list_executions()) == ["exec-1", "exec-2", "exec-3"]
    store.close()
    assert open_files(path) == 0


def test_a_new_store_has_its_tables_under_the_names_other_tools_read(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    sqlite_store(path).close()

    db = sqlite3.connect(path)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = [row[1] for row in db.execute("PRAGMA table_info(schema_version)")]
        versions = [version for (version,) in db.execute("SELECT version FROM schema_version ORDER BY version")]
    finally:
        db.close()

    assert "schema_version" in tables and "executions" in tables  # exactly these names, in this case
    assert columns == ["version"]
    assert versions == [version for version, _ in load_migrations("sqlite")]
