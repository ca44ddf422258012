"""Hold SQLite's write lock on a database until stdin closes: another process's long write transaction.

    python -m faultapp.lockholder DATABASE_FILE

Prints ``locked`` once ``BEGIN IMMEDIATE`` holds the lock, then waits for a line (or EOF) on stdin and
rolls back.
"""

from __future__ import annotations

import sqlite3
import sys


def main(path: str) -> None:
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    connection.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    connection.execute("ROLLBACK")
    connection.close()


if __name__ == "__main__":
    main(sys.argv[1])
