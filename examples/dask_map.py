"""A durable ``map`` whose bodies run on a Dask cluster: ``python examples/dask_map.py`` (needs taskloom[dask]).

Here the cluster is a ``LocalCluster`` of 2 worker processes started by the example; against a real one,
pass ``Client("tcp://scheduler:8786")`` instead, or set ``TASKLOOM_EXECUTOR=dask://scheduler:8786`` and
leave ``use_dask`` out. The workflow's driver and its records stay here (``.taskloom/taskloom.db``): run
it again with the same execution id and the completed items are answered from the store, not recomputed.

The Dask workers import the tasks by module and name, so they live in an importable module: this file
imports itself as ``dask_map`` (its directory is on the workers' path, as the script's own directory).
"""

from __future__ import annotations

import os
import sys

from taskloom import TaskControl, task, workflow


@task(retry_max_attempts=2, retry_delay=0.5)
def score(tc: TaskControl, customer: int) -> dict[str, int]:
    """CPU-bound work for one customer; its progress reaches the store from the Dask worker."""
    total = 0
    for step in range(1, 5):
        total += sum(i * i for i in range(200_000 + customer))
        tc.update_progress(step * 25)
    return {"customer": customer, "score": total % 1000, "pid": os.getpid()}


@workflow
async def nightly_scores(ctx):  # type: ignore[no-untyped-def]
    return await score.map(ctx.input)


def main() -> None:
    from distributed import Client, LocalCluster

    import taskloom.executors

    with (
        LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
        taskloom.executors.use_dask(client),
    ):
        ctx = nightly_scores.run(list(range(8)), execution_id="nightly-2026-12-01")
    print(
        f"{ctx.status}: {len(ctx.output)} customers scored in Dask worker processes "
        f"{sorted({row['pid'] for row in ctx.output})}, driver {os.getpid()}"
    )


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import dask_map

    dask_map.main()
