"""Closing an SQLite store while other threads are in the middle of statements on it must not crash.

An embedded runner, a lease keeper or a worker's thread may be reading the store when another thread
closes it (a test's teardown, a server shutting down). SQLite's connections are not thread-safe: closing
one under a running statement was a segmentation fault. The probe runs in a fresh process, so a crash
fails this test instead of the whole session.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys, threading, time
from taskloom.store import open_store

store = open_store(f"sqlite:///{sys.argv[1]}")
store.create_execution("e", "w", None, "queued")
stop = threading.Event()

def reader():
    while not stop.is_set():
        assert store.get_execution("e") is not None
        store.list_executions(limit=50)

threads = [threading.Thread(target=reader) for _ in range(4)]
for thread in threads:
    thread.start()
deadline = time.monotonic() + 2
closes = 0
while time.monotonic() < deadline:
    store.close()
    closes += 1
stop.set()
for thread in threads:
    thread.join()
print("ok", closes)
"""


def test_closing_the_store_while_other_threads_read_it_neither_crashes_nor_breaks_them(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "taskloom.db")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.startswith("ok "), done.stdout
