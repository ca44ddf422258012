"""Tasks the remote-backend tests run on instance workers: the Numerous document's patterns, plus probes.

The document's tasks keep their shape; their sleeps are shorter so the tests stay fast. Probes record
what happened on the worker in files the test reads (``TASKLOOM_TEST_DIR``): when each run started and
ended, in which process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from taskloom import TaskControl, task


class QuotaError(Exception):
    """A user exception the client knows (it imported this module), so it comes back as itself."""


# -- the document's tasks -----------------------------------------------------------------------------
@task
def process_data(data: list) -> dict:  # type: ignore[type-arg]
    return {"processed": len(data), "items": data}


@task
def long_running_task(tc: TaskControl, iterations: int) -> str:
    for i in range(iterations):
        if tc.should_stop:
            tc.log("Task was cancelled", "warning")
            break
        progress = (i + 1) / iterations * 100
        tc.update_progress(progress, f"Processing item {i + 1}/{iterations}")
        time.sleep(0.05)
    tc.log("Task completed successfully", "info")
    return f"Processed {iterations} items"


def process_single_item(item: int) -> int:
    return item * 2


@task(max_parallel=3)
def process_batch(tc: TaskControl, batch_id: str, items: list) -> dict:  # type: ignore[type-arg]
    tc.log(f"Starting batch {batch_id} with {len(items)} items", "info")
    results = []
    for i, item in enumerate(items):
        if tc.should_stop:
            break
        results.append(process_single_item(item))
        tc.update_progress((i + 1) / len(items) * 100, f"Batch {batch_id}: {i + 1}/{len(items)}")
    tc.log(f"Batch {batch_id} completed", "info")
    return {"batch_id": batch_id, "processed": len(results)}


@task
def cancellable_task(tc: TaskControl, duration: int) -> str:
    for i in range(duration):
        if tc.should_stop:
            tc.log("Task cancelled gracefully", "info")
            return "Cancelled"
        tc.update_progress(i / duration * 100, f"Step {i + 1}/{duration}")
        time.sleep(0.05)
    return "Completed"


@task
def error_prone_task(tc: TaskControl, should_fail: bool) -> str:
    try:
        tc.update_status("Processing")
        if should_fail:
            raise ValueError("Simulated error")
        tc.update_progress(100.0, "Success")
        return "Task completed successfully"
    except Exception as e:
        tc.log(f"Task failed: {e!s}", "error")
        raise


# -- probes -------------------------------------------------------------------------------------------
def _record(name: str, line: str) -> None:
    with open(Path(os.environ["TASKLOOM_TEST_DIR"]) / name, "a") as out:
        out.write(line + "\n")


@task(max_parallel=2)
def tracked(tc: TaskControl, label: str, seconds: float) -> str:
    """Records ``start``/``end`` with times and this process's id in ``tracked-<label prefix>.log``."""
    log = f"tracked-{label.split('-')[0]}.log"
    _record(log, f"start {time.time()} {os.getpid()} {label}")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not tc.should_stop:
        time.sleep(0.01)
    _record(log, f"end {time.time()} {os.getpid()} {label}")
    return label


#: The same function under another name and limit: workers tell the two apart by name.
tracked_wide = tracked.with_options(name="tracked_wide", max_parallel=20)


@task
def survivor(tc: TaskControl, name: str) -> str:
    """First run: records its process id and works until stopped. A later run returns at once."""
    marker = Path(os.environ["TASKLOOM_TEST_DIR"]) / f"{name}.pids"
    earlier = marker.read_text().split() if marker.exists() else []
    _record(marker.name, str(os.getpid()))
    if earlier:
        return f"rerun by {os.getpid()} after {earlier[0]}"
    tc.update_status("first run")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not tc.should_stop:
        time.sleep(0.01)
    return "first run ended"


@task
def fail_with(kind: str, message: str) -> None:
    errors = {"quota": QuotaError, "key": KeyError, "timeout": TimeoutError}
    raise errors[kind](message)


@task
def fail_with_private_error() -> None:
    from remoteapp.private_errors import WorkerOnlyError

    raise WorkerOnlyError("only the worker knows this class")


@task
async def async_double(tc: TaskControl, value: int) -> int:
    tc.update_progress(50.0, "halfway")
    return value * 2


@task(retry_max_attempts=2, retry_delay=0.01)
def flaky(name: str) -> str:
    """Fails its first two attempts on a worker (counted in a file), then succeeds: the policy runs there."""
    marker = Path(os.environ["TASKLOOM_TEST_DIR"]) / f"{name}.attempts"
    _record(marker.name, "x")
    attempts = len(marker.read_text().split())
    if attempts < 3:
        raise ConnectionError(f"attempt {attempts} failed")
    return f"succeeded on attempt {attempts}"


@task
def returns_types() -> object:
    import datetime

    return {"when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), "pair": (1, 2)}


@task(max_parallel=1000)
def trivial(i: int) -> int:
    return i


@task
def whose_logs(tc: TaskControl, label: str) -> list[str | None]:
    """Logs one record with the standard logging module and returns what the record says of its origin."""
    import logging

    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.getLogger("remoteapp.whose_logs")
    keep = Keep()
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        logger.info("working on %s", label)
    finally:
        logger.removeHandler(keep)
    return [getattr(seen[0], "task", None), getattr(seen[0], "instance_id", None)]
