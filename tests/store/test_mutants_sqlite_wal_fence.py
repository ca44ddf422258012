"""The SQLite store where ``tests/store/test_mutants_sqlite.py`` left mutants alive (issue 14, mutation
testing of ``taskloom/store/sqlite.py``): how soon an opener that met another process's lock gets on once it
is released, and a status change with no events fenced by a lease (on both stores: the contract is theirs).
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from processes import wait_for
from sqlite_locks import lock_held, release

from taskloom.errors import LeaseLostError
from taskloom.events import EventType, NewEvent
from taskloom.store import ExecutionStatus, Store
from taskloom.store.sqlite import SQLiteStore

#: writes to the file (a RESERVED lock) until a line arrives on stdin: switching it to WAL fails at once
_HOLD_RESERVED = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT INTO notes VALUES (1)")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


def test_an_opener_that_met_a_lock_gets_on_soon_after_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / "taskloom.db"
    db = sqlite3.connect(path, isolation_level=None)  # a file another tool made, not yet in WAL mode
    db.execute("CREATE TABLE notes (n INTEGER)")
    db.close()
    polled = threading.Event()
    result: list[Any] = []

    def watch(frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call" and arg is time.sleep:
            polled.set()

    def open_store() -> None:
        sys.setprofile(watch)
        try:
            result.append(SQLiteStore(f"sqlite:///{path}", busy_timeout=30.0, retry_seconds=0.0))
        except BaseException as error:  # reported by the test
            result.append(error)
        finally:
            sys.setprofile(None)

    with lock_held(path, _HOLD_RESERVED) as holder:
        opener = threading.Thread(target=open_store)
        opener.start()
        wait_for(lambda: polled.is_set() or not opener.is_alive(), timeout=30, what="the opener to poll the lock")
        met = time.monotonic()  # the opener has just begun a pause before looking again
        release(holder)
        opener.join(timeout=30)

    assert not opener.is_alive() and polled.is_set()
    # It looks again within milliseconds (a short poll of the lock), not after a pause of a second or more:
    # the holder's exit and the migration fit well within the bound on a slow machine.
    assert time.monotonic() - met < 0.95
    [store] = result
    assert isinstance(store, SQLiteStore), store
    store.close()


def test_a_status_change_without_events_is_refused_to_a_worker_that_lost_the_lease(store: Store) -> None:
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING, lease_owner="w1", lease_seconds=60)

    with pytest.raises(LeaseLostError, match=r"worker w2 no longer holds its lease \(now w1\)"):
        store.append_events("exec-1", [], status=ExecutionStatus.COMPLETED, lease_owner="w2")
    record = store.get_execution("exec-1")
    assert record is not None and record.status == ExecutionStatus.RUNNING

    store.append_events("exec-1", [], status=ExecutionStatus.COMPLETED, lease_owner="w1")  # the holder may
    record = store.get_execution("exec-1")
    assert record is not None and record.status == ExecutionStatus.COMPLETED


def test_event_data_is_stored_as_compact_json(tmp_path: Path) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'taskloom.db'}")
    store.create_execution("exec-1", "flow", None, ExecutionStatus.RUNNING)
    store.append_events("exec-1", [NewEvent(EventType.STEP_LOG, step_id="s1", data={"message": "hi", "n": [1, 2]})])
    store.close()

    db = sqlite3.connect(tmp_path / "taskloom.db")
    rows = db.execute("SELECT data FROM events WHERE execution_id = 'exec-1' AND data IS NOT NULL").fetchall()
    db.close()
    assert rows == [('{"message":"hi","n":[1,2]}',)]  # no spaces: every event row is read back by replays
