"""Durable-step overhead against a floor measured in the same run.

Floor: one raw ``sqlite3`` INSERT + COMMIT per step (WAL, synchronous=NORMAL), the least any durable
engine on SQLite must pay. Then taskloom: 1,000 sequential durable steps (sync and async tasks), a
1,000-item durable ``map``, and whole ``python -c`` processes (import alone; import + a one-step
workflow) against ``python -c pass``.

Run: ``.venv/bin/python benchmarks/bench_steps.py`` (prints one line per figure, best of N runs).
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = 1000
REPEATS = 5


def best(fn, repeats: int = REPEATS) -> float:  # type: ignore[no-untyped-def]
    return min(fn() for _ in range(repeats))


def floor_per_step(folder: Path) -> float:
    path = folder / f"floor-{time.perf_counter_ns()}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, execution TEXT, step TEXT, value BLOB)")
    start = time.perf_counter()
    for i in range(STEPS):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (execution, step, value) VALUES (?, ?, ?)", ("e", str(i), b"\x80\x05K\x01."))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed / STEPS


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["TASKLOOM_DATABASE_URL"] = f"sqlite:///{folder / 'bench.db'}"
        os.environ["TASKLOOM_HOME"] = str(folder)
        from taskloom import task, workflow

        @task
        def sync_step(i: int) -> int:
            return i

        @task
        async def async_step(i: int) -> int:
            return i

        @workflow
        async def sequential_sync(ctx):  # type: ignore[no-untyped-def]
            for i in range(STEPS):
                await sync_step(i)

        @workflow
        async def sequential_async(ctx):  # type: ignore[no-untyped-def]
            for i in range(STEPS):
                await async_step(i)

        @workflow
        async def fan_out(ctx):  # type: ignore[no-untyped-def]
            return len(await sync_step.map(range(STEPS)))

        def timed(wf) -> float:  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            ctx = wf.run()
            assert ctx.has_succeeded, ctx.output
            return time.perf_counter() - start

        floor = best(lambda: floor_per_step(folder))
        sync_total = best(lambda: timed(sequential_sync))
        async_total = best(lambda: timed(sequential_async))
        map_total = best(lambda: timed(fan_out))

        print(f"floor: raw sqlite3 INSERT+COMMIT          {floor * 1e6:8.1f} us/step")
        for label, total in (("sync task", sync_total), ("async task", async_total)):
            per_step = total / STEPS
            print(
                f"taskloom {STEPS} sequential steps, {label:<10} {per_step * 1e6:8.1f} us/step "
                f"({per_step / floor:4.1f}x floor; target <= 100 us)"
            )
        print(
            f"taskloom durable map of {STEPS} sync tasks    {map_total:8.3f} s "
            f"({map_total / (floor * STEPS):4.1f}x {STEPS} floor commits; target <= 0.5 s)"
        )

        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}

        def process(code: str) -> float:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp)
            return time.perf_counter() - start

        one_step = (
            "from taskloom import task, workflow\n"
            "@task\ndef hello(name): return 'hello ' + name\n"
            "@workflow\nasync def wf(ctx): return await hello(ctx.input)\n"
            "assert wf.run('world').output == 'hello world'\n"
        )
        import_code = "import time; t = time.perf_counter(); import taskloom; print(time.perf_counter() - t)"
        process(one_step)  # warm the bytecode cache
        bare = best(lambda: process("pass"))
        whole = best(lambda: process(one_step))
        imports = []
        for _ in range(REPEATS):
            out = subprocess.run(
                [sys.executable, "-c", import_code], check=True, env=env, capture_output=True, text=True
            )
            imports.append(float(out.stdout))
        print(f"floor: python -c pass                     {bare:8.3f} s")
        fastest, median = min(imports), statistics.median(imports)
        print(f"python -c: import taskloom (in-process)   {fastest:8.3f} s (median {median:.3f}; target <= 0.1 s)")
        print(f"python -c: import + one-step workflow     {whole:8.3f} s ({whole / bare:4.1f}x bare; target <= 0.25 s)")


if __name__ == "__main__":
    main()
