"""The side-effect log: each step appends ``<execution>:<label>`` to $FAULT_LOG, outside the store.

The store cannot vouch for itself after a fault, so the tests count what really happened here. One
``os.write`` on an ``O_APPEND`` descriptor per line: lines from concurrent processes never interleave.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def note(execution_id: str, label: str) -> None:
    """Record that step ``label`` of ``execution_id`` did its work (once per run of the step body)."""
    fd = os.open(os.environ["FAULT_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{execution_id}:{label}\n".encode())
    finally:
        os.close(fd)


def wait_for_gate(execution_id: str, label: str) -> None:
    """Say the step is in flight (``<execution>:<label>:waiting``), then wait until $FAULT_GATE exists.

    The test places its fault while steps wait here, then opens the gate.
    """
    note(execution_id, f"{label}:waiting")
    gate = Path(os.environ["FAULT_GATE"])
    deadline = time.monotonic() + 60
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {gate} never opened")
        time.sleep(0.01)  # polling a file the test creates, with a deadline
