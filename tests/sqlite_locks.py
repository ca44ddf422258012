"""Another process holding a SQLite file's write lock, for the tests of what a store does meanwhile.

A real lock from a real process (never a mock): the holder takes the lock, prints ``locked``, and keeps
it until a line arrives on its stdin or the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

#: takes the write lock (BEGIN IMMEDIATE) and holds it until a line arrives on stdin
HOLD_WRITE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("ROLLBACK")
"""


@contextlib.contextmanager
def lock_held(path: Path, script: str = HOLD_WRITE_LOCK) -> Iterator[subprocess.Popen[str]]:
    """``script`` (by default :data:`HOLD_WRITE_LOCK`) holding ``path``'s lock for the ``with`` block."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        release(holder)


def release(holder: subprocess.Popen[str]) -> None:
    """Let the holder end its transaction and exit (a no-op once it has)."""
    if holder.poll() is None:
        assert holder.stdin is not None
        with contextlib.suppress(OSError):
            holder.stdin.write("\n")
            holder.stdin.flush()
        holder.wait(timeout=30)
