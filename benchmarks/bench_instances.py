"""Instance start-to-result overhead against ``concurrent.futures.ThreadPoolExecutor`` in the same run.

Both sides run the same 1,000 trivial functions: the executor submits them all, then collects every
result; taskloom starts 1,000 instances in one session (``max_parallel=1000``, so none waits for a slot),
then collects every result. Both sides are warm (the executor is long-lived and has started its threads,
as taskloom's shared pool has), and their runs alternate so that machine noise hits both alike. The
figure is the ratio of the best wall times; the target is at most 3x the executor.

Run: ``.venv/bin/python benchmarks/bench_instances.py``
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from taskloom import Session, task

INSTANCES = 1000
REPEATS = 15
TARGET_RATIO = 3.0


def trivial(i: int) -> int:
    return i


trivial_task = task(max_parallel=INSTANCES)(trivial)


def executor_run(pool: ThreadPoolExecutor) -> float:
    start = time.perf_counter()
    futures = [pool.submit(trivial, i) for i in range(INSTANCES)]
    assert [f.result() for f in futures] == list(range(INSTANCES))
    return time.perf_counter() - start


def taskloom_run() -> float:
    with Session(name="bench"):
        start = time.perf_counter()
        futures = [trivial_task.instance().start(i) for i in range(INSTANCES)]
        assert [f.result() for f in futures] == list(range(INSTANCES))
        return time.perf_counter() - start


def main() -> None:
    executor_times: list[float] = []
    taskloom_times: list[float] = []
    with ThreadPoolExecutor() as pool:
        executor_run(pool)  # warm up: threads started, code paths hot, as in a long-lived program
        taskloom_run()
        for _ in range(REPEATS):
            executor_times.append(executor_run(pool))
            taskloom_times.append(taskloom_run())
    executor, instances = min(executor_times), min(taskloom_times)
    ratio = instances / executor
    print(f"ThreadPoolExecutor: {INSTANCES} submit + result   {executor * 1e3:8.1f} ms")
    print(f"taskloom: {INSTANCES} instance().start + result   {instances * 1e3:8.1f} ms")
    print(f"ratio {ratio:4.2f}x the executor (target <= {TARGET_RATIO:g}x)")


if __name__ == "__main__":
    main()
