"""Queues: what a concurrency limit costs. 1,000 executions through a queue with a concurrency limit,
on 2 worker processes, against the same through the plain (default) queue, in the same run.

The limit (``capped``, concurrency 8) equals the slots of the two workers (``--concurrency 4`` each), so
it never holds work back that the workers could run: the difference is the price of enforcing it (the
queue's row locked, the running executions counted, in every claim). The workers serve only the queue
of the round (``--queue``), so the plain round pays nothing for the limited queue. Each round gets a fresh store, has
its 1,000 one-step executions queued before the workers start, and is timed from durable records: from
the first claim (``claimed_at``) to the last ``execution_completed`` event. Rounds alternate plain and
capped; the figure is the ratio of the medians. Target: at most 1.3x, on SQLite and on PostgreSQL (a
throwaway server started from ``tests/pgserver.py``).

Run: ``.venv/bin/python benchmarks/bench_queues.py [--executions 1000] [--rounds 3] [--store sqlite|postgres]``

This file is also the workers' module: they import it for the ``tiny`` workflow and the ``capped`` queue.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from taskloom import Queue, WorkflowExecutionContext, task, workflow

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test suite's helpers: throwaway PostgreSQL, bounded waits
from bench_failover import store_urls  # noqa: E402  # one fresh store per round, SQLite or PostgreSQL
from processes import stop, wait_for  # type: ignore[import-not-found]  # noqa: E402

WORKERS = 2
WORKER_CONCURRENCY = 4
CAPPED = Queue("capped", concurrency=WORKERS * WORKER_CONCURRENCY)
TARGET_RATIO = 1.3


@task
def tiny_step(i: int) -> int:
    return i + 1


@workflow
async def tiny(ctx: WorkflowExecutionContext[int]) -> int:
    return int(await tiny_step(ctx.input))


# -- the measurement --------------------------------------------------------------------------------------


def timed_span(url: str, queue: str) -> float:
    """Seconds from the queue's first claim to its last completion, read back from the store."""
    sql = (
        "SELECT MIN(x.claimed_at), MAX(e.ts) FROM executions x JOIN events e ON e.execution_id = x.id "
        "WHERE x.queue = %s AND e.type = 'execution_completed'"
    )
    if url.startswith("sqlite"):
        from taskloom.store.sqlite import path_from_url

        with sqlite3.connect(path_from_url(url)) as conn:
            first, last = conn.execute(sql.replace("%s", "?"), (queue,)).fetchone()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            found = conn.execute(sql, (queue,)).fetchone()
            assert found is not None
            first, last = found
    return float(last) - float(first)


def one_round(url: str, folder: Path, queue: str, executions: int) -> float:
    from taskloom.executions import queue_execution
    from taskloom.store import open_store

    env = {
        **os.environ,
        "TASKLOOM_DATABASE_URL": url,
        "TASKLOOM_HOME": str(folder),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    store = open_store(url)
    ids = [queue_execution(store, "tiny", f"{__name__}:tiny", n, queue=queue) for n in range(executions)]
    workers = []
    for n in range(WORKERS):
        with (folder / f"worker-{queue}-{n}.log").open("wb") as err:
            command = ["worker", "bench_queues", "--queue", queue, "--concurrency", str(WORKER_CONCURRENCY)]
            command += ["--poll", "0.05"]
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "taskloom", *command], env=env, stdout=subprocess.DEVNULL, stderr=err
                )
            )
    try:
        finished = ("completed", "failed", "cancelled")

        def all_finished() -> bool:
            if any(worker.poll() is not None for worker in workers):
                raise SystemExit(f"a worker exited, so nothing was measured: see its log in {folder}")
            return sum(len(store.list_executions(status=s, limit=len(ids))) for s in finished) == len(ids)

        wait_for(all_finished, timeout=600)
        failed = store.list_executions(status="failed", limit=1)
        if failed:
            raise SystemExit(f"an execution failed, so nothing was measured: see {folder} ({failed[0].id})")
    finally:
        stop(*workers)
        store.close()
    return timed_span(url, queue)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=1000, help="executions per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per queue and store (default 3)")
    parser.add_argument("--store", choices=["sqlite", "postgres"], action="append", help="default: both")
    args = parser.parse_args()
    for kind in args.store or ["sqlite", "postgres"]:
        with tempfile.TemporaryDirectory() as tmp, store_urls(kind) as new_store:
            if new_store is None:
                continue
            seconds: dict[str, list[float]] = {"default": [], "capped": []}
            for round_ in range(args.rounds):
                for queue in ("default", "capped") if round_ % 2 == 0 else ("capped", "default"):
                    folder = Path(tmp) / f"{queue}-{round_}"
                    folder.mkdir()
                    seconds[queue].append(one_round(new_store(folder), folder, queue, args.executions))
            plain, capped = statistics.median(seconds["default"]), statistics.median(seconds["capped"])
            ratio = capped / plain
            print(
                f"{kind:<8} {args.executions} executions on {WORKERS} workers: plain queue {plain:6.2f} s "
                f"({args.executions / plain:5.0f}/s), concurrency-limited queue {capped:6.2f} s "
                f"({args.executions / capped:5.0f}/s): {ratio:4.2f}x (target <= {TARGET_RATIO}x), "
                f"median of {args.rounds} rounds each"
            )
            for queue, figures in seconds.items():
                print(f"         {queue:<8} rounds: {', '.join(f'{s:.2f}' for s in figures)} s")


if __name__ == "__main__":
    main()
