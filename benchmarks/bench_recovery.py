"""Recovery: from PostgreSQL answering again after a restart to the first step recorded after it.

One or two ``taskloom worker`` processes run long workflows of short steps against a throwaway
PostgreSQL server (``tests/pgserver.py``). Each round restarts the server (``pg_ctl stop -m fast``, then
the same server on the same port: every connection is cut, committed data stays); the figure is the time
from the server answering again to the timestamp of the first step completion written
after that, read back from the store. The workers are the same processes in every round: they must
survive each restart.

The floor, measured in the same run: the median gap between two step completions of one execution while
nothing fails. Even a
worker that reconnected instantly shows up only at its next step. The contract: in-flight work resumes
within the lease time + 2 s of the database answering again.

Run: ``.venv/bin/python benchmarks/bench_recovery.py [--lease 2.0] [--rounds 5] [--workers 2]``

This file is also the workers' module: they import it for the ``long_steps`` workflow below.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from taskloom import WorkflowExecutionContext, task, workflow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's helpers: throwaway PostgreSQL, bounded waits
from processes import kill, wait_for  # type: ignore[import-not-found]  # noqa: E402

STEPS = 1_000_000  # never reached: the workers are killed at the end
STEP_SECONDS = 0.005
#: the contract's allowance on top of the lease
ALLOWANCE_SECONDS = 2.0
#: the events that count as a recorded step: one per step, so their gaps are the steps' cadence
STEP_EVENTS = ("step_completed",)


@task
def short_step(i: int) -> int:
    time.sleep(STEP_SECONDS)
    return i


@workflow
async def long_steps(ctx: WorkflowExecutionContext[int]) -> int:
    total = 0
    for i in range(ctx.input):
        total += await short_step(i)
    return total


# -- the measurement --------------------------------------------------------------------------------------


def start_worker(env: dict[str, str], log: Path, lease: float) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "taskloom", "worker", "bench_recovery", "--lease", str(lease), "--poll", "0.05"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def step_stamps(store: Any, executions: list[str], after: float) -> list[float]:
    """Timestamps (Unix seconds) of the step events of ``executions`` written at or after ``after``."""
    return sorted(
        stamp
        for execution in executions
        for event in store.load_events(execution)
        if event.type in STEP_EVENTS and (stamp := event.timestamp.timestamp()) >= after
    )


def floor_gap(store: Any, executions: list[str], since: float) -> float:
    """The median gap between consecutive step completions of one execution since ``since``: the cadence."""
    gaps = []
    for execution in executions:
        stamps = step_stamps(store, [execution], since)
        gaps += [b - a for a, b in itertools.pairwise(stamps)]
    return statistics.median(gaps)


def flowing(steps_since: Callable[[float], list[float]], moment: float) -> bool:
    """Whether the work flows again: 50 steps recorded since ``moment``."""
    return len(steps_since(moment)) > 50


def run_rounds(server: Any, folder: Path, lease: float, rounds: int, workers: int) -> tuple[list[float], float]:
    """Restart the server ``rounds`` times under running workers; seconds from answering to a new step."""
    from taskloom.executions import queue_execution
    from taskloom.store import open_store

    url = server.url()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("PG")},
        "TASKLOOM_DATABASE_URL": url,
        "TASKLOOM_HOME": str(folder),
        "TASKLOOM_LEASE_SECONDS": str(lease),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    store = open_store(url)
    logs = [folder / f"worker-{n}.log" for n in range(workers)]
    processes = [start_worker(env, log, lease) for log in logs]
    try:
        wait_for(lambda: all("running workflows" in log.read_text() for log in logs), what="the workers to start")
        executions = [queue_execution(store, "long_steps", f"{__name__}:long_steps", STEPS) for _ in range(workers)]
        steady_since = time.time()
        wait_for(lambda: len(step_stamps(store, executions, steady_since)) > 100, what="steps before round 1")
        floor = floor_gap(store, executions, steady_since)
        delays = []

        def steps_since(moment: float) -> list[float]:
            return step_stamps(store, executions, moment)

        for round_ in range(rounds):
            server.restart()  # returns once the server accepts connections again
            answering = time.time()
            first = wait_for(partial(steps_since, answering), what="a step after the restart")[0]
            delays.append(first - answering)
            dead = [log.name for log, process in zip(logs, processes, strict=True) if process.poll() is not None]
            if dead:
                raise SystemExit(f"round {round_ + 1}: workers died across the restart: {dead}")
            # let the work flow again before the next restart
            wait_for(partial(flowing, steps_since, answering), what="steps after the restart")
        return delays, floor
    finally:
        kill(*processes)
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lease", type=float, default=2.0, help="lease seconds of the workers (default 2.0)")
    parser.add_argument("--rounds", type=int, default=5, help="restarts measured (default 5)")
    parser.add_argument("--workers", type=int, default=2, choices=[1, 2], help="worker processes (default 2)")
    args = parser.parse_args()
    from pgserver import find_bindir, running_postgres  # type: ignore[import-not-found]  # tests/ on sys.path

    if find_bindir() is None:
        print("postgres: skipped, no PostgreSQL server binaries (Debian: apt-get install postgresql)")
        return
    target = args.lease + ALLOWANCE_SECONDS
    with tempfile.TemporaryDirectory() as tmp, running_postgres() as server:
        delays, floor = run_rounds(server, Path(tmp), args.lease, args.rounds, args.workers)
    worst, median = max(delays), statistics.median(delays)
    print(
        f"postgres restart -> first new step: worst {worst:5.3f} s, median {median:5.3f} s over {args.rounds} "
        f"restarts, {args.workers} worker(s); lease {args.lease:g} s; worst {worst / target:4.2f}x the target "
        f"(<= lease + {ALLOWANCE_SECONDS:g} s = {target:g} s); floor (median gap between steps) "
        f"{floor * 1e3:4.1f} ms"
    )


if __name__ == "__main__":
    main()
