"""Failover: from a worker's death to the first step another worker writes, against the lease time.

Two ``taskloom worker`` processes share one store. The first runs a workflow of many short steps under
a lease of ``--lease`` seconds; the second is idle, with a poll interval far longer than the lease (so
only the lease's expiry can wake it). The first is killed with SIGKILL mid-workflow; the figure is the
time from the kill to the timestamp of the first step event (``step_started``) the second worker
writes after replaying the recorded steps, read back from the store. The dead worker renewed its lease
every lease/3, so the lease had between 2/3 and all of its time left at the kill: the worst case is the
lease itself plus the takeover. Target: at most the lease plus 0.1 s, on SQLite and on PostgreSQL (a
throwaway server started from ``tests/pgserver.py``).

Run: ``.venv/bin/python benchmarks/bench_failover.py [--lease 1.0] [--rounds 5] [--store sqlite|postgres]``

This file is also the workers' module: they import it for the ``many_steps`` workflow below.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskloom import WorkflowExecutionContext, task, workflow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's helpers: throwaway PostgreSQL, bounded waits
from processes import wait_for  # type: ignore[import-not-found]  # noqa: E402

STEPS = 5000
STEP_SECONDS = 0.002
TARGET_EXTRA_SECONDS = 0.1


@task
def short_step(i: int) -> int:
    time.sleep(STEP_SECONDS)
    return i


@workflow
async def many_steps(ctx: WorkflowExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await short_step(i)
    return total


# -- the measurement --------------------------------------------------------------------------------------


def start_worker(env: dict[str, str], log: Path, lease: float, poll: float) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "bench_failover", "--lease", str(lease), "--poll", str(poll)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def stop(worker: subprocess.Popen[bytes]) -> None:
    """Kill at once: a graceful stop would wait for the rest of the thousands of steps, measured nothing."""
    if worker.poll() is None:
        worker.kill()
    worker.wait()


def one_failover(url: str, folder: Path, lease: float, round_: int) -> tuple[float, float]:
    """Seconds from SIGKILL of the worker running an execution to the next step written by the idle one,
    and from the expiry of the dead worker's lease to that step."""
    from taskloom.executions import queue_execution
    from taskloom.store import open_store

    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": url,
        "TASKLOOM_HOME": str(folder),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    store = open_store(url)
    busy_log, idle_log = folder / f"busy-{round_}.log", folder / f"idle-{round_}.log"
    busy = start_worker(env, busy_log, lease, poll=0.05)
    idle: subprocess.Popen[bytes] | None = None
    try:
        execution = queue_execution(store, "many_steps", f"{__name__}:many_steps", STEPS)
        wait_for(lambda: len(store.load_events(execution)) > 20, what="the first worker to run steps")
        idle = start_worker(env, idle_log, lease, poll=60.0)  # only a lease expiry can wake it in time
        wait_for(lambda: "running workflows" in idle_log.read_text(), what="the idle worker to start")
        time.sleep(lease * (0.5 + round_ % 3 / 6))  # kill at different points of the renewal cycle
        os.kill(busy.pid, signal.SIGKILL)
        killed_at = time.time()
        busy.wait()
        last_seq = store.load_events(execution)[-1].seq  # the dead worker writes nothing more
        expires_at = store.next_lease_expiry(["many_steps"])  # the dead worker's lease, the only one
        assert expires_at is not None

        def taken_over() -> Any:
            return next((e for e in store.load_events(execution, last_seq) if e.type == "step_started"), None)

        event = wait_for(taken_over, what="the idle worker to take the execution over")
        record = store.get_execution(execution)
        assert record is not None and record.status == "running", record
        written_at = event.timestamp.timestamp()
        return written_at - killed_at, written_at - expires_at
    finally:
        for worker in (busy, idle):
            if worker is not None:
                stop(worker)
        store.close()


@contextmanager
def store_urls(kind: str) -> Iterator[Callable[[Path], str] | None]:
    """A maker of empty stores of ``kind`` (one per round, so no round sees another's executions)."""
    if kind == "sqlite":
        yield lambda folder: f"sqlite:///{folder / 'failover.db'}"
        return
    from pgserver import find_bindir, running_postgres  # type: ignore[import-not-found]  # tests/ on sys.path

    if find_bindir() is None:
        print("postgres: skipped, no PostgreSQL server binaries (Debian: apt-get install postgresql)")
        yield None
        return
    with running_postgres() as server:
        yield lambda folder: server.create_database(f"failover_{folder.name.replace('-', '_')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lease", type=float, default=1.0, help="lease seconds of both workers (default 1.0)")
    parser.add_argument("--rounds", type=int, default=5, help="failovers measured per store (default 5)")
    parser.add_argument("--store", choices=["sqlite", "postgres"], action="append", help="default: both")
    args = parser.parse_args()
    target = args.lease + TARGET_EXTRA_SECONDS
    for kind in args.store or ["sqlite", "postgres"]:
        with tempfile.TemporaryDirectory() as tmp, store_urls(kind) as new_store:
            if new_store is None:
                continue
            times, takeovers = [], []
            for round_ in range(args.rounds):
                round_folder = Path(tmp) / f"round-{round_}"
                round_folder.mkdir()
                failover, takeover = one_failover(new_store(round_folder), round_folder, args.lease, round_)
                times.append(failover)
                takeovers.append(takeover)
            worst, median = max(times), statistics.median(times)
            print(
                f"{kind:<8} death -> first replayed step: worst {worst:5.3f} s, median {median:5.3f} s "
                f"over {args.rounds} kills; lease {args.lease:g} s; "
                f"worst {worst / target:4.2f}x the target (<= lease + {TARGET_EXTRA_SECONDS:g} s = {target:g} s); "
                f"lease expiry -> step: worst {max(takeovers) * 1e3:4.0f} ms, "
                f"median {statistics.median(takeovers) * 1e3:4.0f} ms"
            )


if __name__ == "__main__":
    main()
