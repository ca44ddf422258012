"""``wf.start`` + results through the embedded runner, against ``wf.run`` in a loop, in the same run.

1,000 one-step executions each way, on one SQLite store (WAL) in a temporary folder: first all 1,000
``wf.start(i)`` then every ``handle.result()``; then the same 1,000 inputs through ``wf.run(i)`` one
after another. Both write the same rows (the execution, its step, its end); the start path adds the
lease hand-over to the background runner and the results' reads. Target: start+result at most 2x the
``wf.run`` loop. Each figure is the best of ``REPEATS`` rounds, the two measured alternately so that a
busy machine slows both alike.

Run: ``.venv/bin/python benchmarks/bench_start.py [COUNT]`` (COUNT defaults to 1000).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
REPEATS = 3
TARGET_RATIO = 2.0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TASKLOOM_DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'bench.db'}"
        os.environ["TASKLOOM_HOME"] = tmp
        os.environ.pop("TASKLOOM_SERVER_URL", None)
        os.environ.pop("TASKLOOM_START", None)
        from taskloom import WorkflowExecutionContext, task, workflow

        @task
        def double(value: int) -> int:
            return value * 2

        @workflow
        async def one_step(ctx: WorkflowExecutionContext[int]) -> int:
            return await double(ctx.input)  # type: ignore[no-any-return]

        one_step.run(0)  # warm up: the store's schema, imports, the first connection
        one_step.start(0).result(timeout=60)  # and the runner's thread

        def started() -> float:
            begin = time.perf_counter()
            handles = [one_step.start(i) for i in range(COUNT)]
            results = [handle.result(timeout=600) for handle in handles]
            elapsed = time.perf_counter() - begin
            assert results == [2 * i for i in range(COUNT)], "wrong results through wf.start"
            return elapsed

        def ran() -> float:
            begin = time.perf_counter()
            results = [one_step.run(i).output for i in range(COUNT)]
            elapsed = time.perf_counter() - begin
            assert results == [2 * i for i in range(COUNT)], "wrong results through wf.run"
            return elapsed

        start_times, run_times = [], []
        for _ in range(REPEATS):
            start_times.append(started())
            run_times.append(ran())
        start_best, run_best = min(start_times), min(run_times)
        ratio = start_best / run_best
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER"
        each = COUNT / 1e3
        print(f"wf.start + result, {COUNT} one-step executions: {start_best:.2f} s ({start_best / each:.2f} ms each)")
        print(f"wf.run in a loop,  {COUNT} one-step executions: {run_best:.2f} s ({run_best / each:.2f} ms each)")
        print(f"ratio start/run: {ratio:.2f}x (target <= {TARGET_RATIO:g}x): {verdict}")


if __name__ == "__main__":
    main()
