"""A durable ``map`` of CPU-bound tasks on a Dask cluster through taskloom, against plain Dask in the same run.

One ``distributed.LocalCluster`` of 2 worker processes (1 thread each, on 127.0.0.1) serves both sides:

- the floor: plain Dask, ``client.gather(client.map(burn, ...))``;
- taskloom: a workflow whose one step is ``burn_task.map(...)``, its bodies sent to the same cluster with
  ``taskloom.executors.use_dask(client)``, each item's start and outcome recorded in a SQLite store;
- for comparison, the same workflow on taskloom's local executor (threads of this process: one core, and
  the GIL, for pure-Python work).

Each task burns ``--seconds`` of its thread's CPU time (0.5 s by default), so a busy machine slows the wall
time of every side alike. The figure is taskloom's wall time over plain Dask's; the target is at most
1.2x. The sides run one after the other, Dask first, after one warm-up task on each worker.

Run: ``.venv/bin/python benchmarks/bench_dask.py`` (200 tasks of 0.5 s: about 3 minutes on 2 cores);
shrink it with ``--tasks 40 --seconds 0.2``. Needs the ``dask`` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

from taskloom import task, workflow

TARGET_RATIO = 1.2


def burn(seconds: float) -> float:
    """Spin until this thread has used ``seconds`` of CPU time; the work of one task."""
    end = time.thread_time() + seconds
    x = 0.0
    while time.thread_time() < end:
        for i in range(1000):
            x += i * 0.5
    return seconds


burn_task = task(burn)


@workflow
async def burn_map(ctx: Any) -> list[float]:
    tasks, seconds = ctx.input
    return await burn_task.map([seconds] * tasks)


def plain_dask(client: Any, tasks: int, seconds: float) -> float:
    start = time.perf_counter()
    results = client.gather(client.map(burn, [seconds] * tasks, pure=False))
    assert len(results) == tasks
    return time.perf_counter() - start


def through_taskloom(tasks: int, seconds: float) -> float:
    start = time.perf_counter()
    ctx = burn_map.run((tasks, seconds))
    elapsed = time.perf_counter() - start
    assert ctx.status == "completed" and len(ctx.output) == tasks, ctx.output
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=200, help="items in the map (default 200)")
    parser.add_argument("--seconds", type=float, default=0.5, help="CPU seconds per task (default 0.5)")
    parser.add_argument("--no-local", action="store_true", help="skip the run on taskloom's local executor")
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.seconds <= 0:
        parser.error("--tasks must be >= 1 and --seconds > 0")

    from distributed import Client, LocalCluster

    import taskloom.executors

    home = tempfile.mkdtemp(prefix="taskloom-bench-dask-")
    os.environ["TASKLOOM_HOME"] = home
    os.environ.pop("TASKLOOM_DATABASE_URL", None)
    os.environ.pop("TASKLOOM_EXECUTOR", None)
    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.gather(client.map(burn, [0.01, 0.01], pure=False))  # workers up and warm
        dask_time = plain_dask(client, args.tasks, args.seconds)
        with taskloom.executors.use_dask(client):
            taskloom_time = through_taskloom(args.tasks, args.seconds)
    local_time = None
    if not args.no_local:
        with taskloom.executors.use_local():
            local_time = through_taskloom(args.tasks, args.seconds)

    work = args.tasks * args.seconds
    print(f"map of {args.tasks} tasks x {args.seconds:g} s CPU ({work:g} s of work), LocalCluster of 2 process workers")
    print(f"plain Dask (client.map + gather)     {dask_time:8.2f} s")
    print(f"taskloom on Dask (durable map)       {taskloom_time:8.2f} s")
    if local_time is not None:
        print(f"taskloom local executor (threads)    {local_time:8.2f} s")
    ratio = taskloom_time / dask_time
    print(f"ratio {ratio:4.2f}x plain Dask (target <= {TARGET_RATIO:g}x)")
    if local_time is not None:
        print(f"the local executor takes {local_time / taskloom_time:4.2f}x taskloom on Dask")


if __name__ == "__main__":
    # The tasks travel to the Dask workers by reference (module and name), so they must come from an
    # importable module, not from __main__: run main() from this file imported as ``bench_dask``.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_dask

    bench_dask.main()
